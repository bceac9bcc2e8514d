package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend/pexip"
	"visio.dev/operator/internal/backend/pexip/pexiptest"
	"visio.dev/operator/internal/operator"
	"visio.dev/operator/internal/pins"
)

// PINs live only in Secrets. These tests collect every PIN the operator
// generates (and those the tests write themselves) and look for them in
// everything else the suite produced: the manager's logs at every level,
// the Events of the cluster, and the status of every object.

// suiteLog receives everything the managers of the suite log, at every level,
// whatever reaches stderr, when keepingSuiteLog.
var (
	suiteLog        syncBuffer
	keepingSuiteLog bool
)

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// benchmarksOnly tells whether this run is one of the benchmark runs the
// Makefile makes (-run=NONE -bench=...), which run no test. Only then does
// the suite not keep every log entry for the PIN-leak scans: at the most
// verbose levels client-go logs every response body, which a benchmark would
// pay for in the CPU it measures, and hold in memory to the end.
func benchmarksOnly() bool {
	run := flag.Lookup("test.run").Value.String()
	return flag.Lookup("test.bench").Value.String() != "" && (run == "NONE" || run == "^$")
}

// alsoToSuiteLog is the logger option that copies every entry, down to the
// most verbose debug level, into suiteLog, as JSON without timestamps (which
// only add digits a short PIN could be mistaken for).
func alsoToSuiteLog() zap.Opts {
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		MessageKey: "msg", LevelKey: "level", NameKey: "logger", StacktraceKey: "stacktrace",
		EncodeLevel: zapcore.LowercaseLevelEncoder, EncodeDuration: zapcore.StringDurationEncoder,
		LineEnding: zapcore.DefaultLineEnding,
	})
	everything := uberzap.LevelEnablerFunc(func(zapcore.Level) bool { return true })
	core := zapcore.NewCore(&zap.KubeAwareEncoder{Encoder: enc}, zapcore.AddSync(&suiteLog), everything)
	return zap.RawZapOpts(uberzap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, core) }))
}

// pinRecord holds the PINs seen in Secrets since the recorder started, and
// the numeric ids of rooms: a PIN equal to a room's number proves nothing
// when found, since the number appears legitimately.
var pinRecord = struct {
	sync.Mutex
	once       sync.Once
	err        error
	pins       map[string]string // PIN -> where it was seen
	numericIDs map[string]bool
}{pins: map[string]string{}, numericIDs: map[string]bool{}}

// recordPINs adds PINs the tests chose themselves.
func recordPINs(values ...string) {
	pinRecord.Lock()
	defer pinRecord.Unlock()
	for _, p := range values {
		if p != "" {
			pinRecord.pins[p] = "written by a test"
		}
	}
}

func recordSecret(s *corev1.Secret) {
	pinRecord.Lock()
	defer pinRecord.Unlock()
	for _, k := range []string{pins.HostPINKey, pins.GuestPINKey} {
		if p := string(s.Data[k]); p != "" {
			pinRecord.pins[p] = fmt.Sprintf("Secret %s/%s key %s", s.Namespace, s.Name, k)
		}
	}
}

func recordNumericIDs(v *v1.VMR) {
	pinRecord.Lock()
	defer pinRecord.Unlock()
	for _, n := range []string{v.Spec.NumericID, v.Status.NumericID} {
		if n != "" {
			pinRecord.numericIDs[n] = true
		}
	}
}

// startPINRecorder watches, for the rest of the suite, the PIN Secrets the
// operator generates (they carry the label tenancy.visio.dev/vmr) and the
// VMRs, so that the PINs of rooms deleted since are still known.
func startPINRecorder(t *testing.T) {
	t.Helper()
	pinRecord.once.Do(func() { pinRecord.err = runPINRecorder() })
	if pinRecord.err != nil {
		t.Fatalf("cannot watch PIN Secrets: %v", pinRecord.err)
	}
}

func runPINRecorder() error {
	generated, err := labels.NewRequirement("tenancy.visio.dev/vmr", selection.Exists, nil)
	if err != nil {
		return err
	}
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: labels.NewSelector().Add(*generated)},
	}})
	if err != nil {
		return err
	}
	ctx := context.Background() // the recorder lives as long as the suite
	handle := func(obj client.Object, onSecret func(*corev1.Secret), onVMR func(*v1.VMR)) error {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		record := func(o any) {
			switch x := o.(type) {
			case *corev1.Secret:
				onSecret(x)
			case *v1.VMR:
				onVMR(x)
			}
		}
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    record,
			UpdateFunc: func(_, o any) { record(o) },
		})
		return err
	}
	if err := handle(&corev1.Secret{}, recordSecret, nil); err != nil {
		return err
	}
	if err := handle(&v1.VMR{}, nil, recordNumericIDs); err != nil {
		return err
	}
	go func() { _ = c.Start(ctx) }()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !c.WaitForCacheSync(sctx) {
		return fmt.Errorf("cache did not sync")
	}
	return nil
}

// corpus is a text the operator produced, split into words: runs of ASCII
// letters and digits, a decimal point between digits included. A PIN leaks
// when it is one of the words: "pin=482915" and `"pin":"482915"` do, while
// the digits inside a UID, a timestamp or a longer number do not count.
type corpus struct {
	name  string
	words map[string][]string // word -> a few excerpts where it appears
}

func newCorpus(name string) *corpus { return &corpus{name: name, words: map[string][]string{}} }

// add splits text into words; only all-digit words are kept, since only
// those can be a PIN.
func (c *corpus) add(where, text string) {
	isWordByte := func(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
	isDigit := func(i int) bool { return i >= 0 && i < len(text) && text[i] >= '0' && text[i] <= '9' }
	for i := 0; i < len(text); {
		if !isWordByte(text[i]) {
			i++
			continue
		}
		start := i
		for i < len(text) && (isWordByte(text[i]) || text[i] == '.' && isDigit(i-1) && isDigit(i+1)) {
			i++
		}
		w := text[start:i]
		if strings.Trim(w, "0123456789") != "" {
			continue
		}
		if len(c.words[w]) < 3 {
			lo, hi := max(start-80, 0), min(i+80, len(text))
			c.words[w] = append(c.words[w], where+": …"+text[lo:hi]+"…")
		}
	}
}

// addJSON adds every key and value of a JSON document, strings decoded, so
// that an escape sequence (\n, \") does not hide a PIN. Fields the API
// server fills with counters (resourceVersion, managedFields) are skipped:
// they are neither written by the operator nor secret, and a six-digit PIN
// could be mistaken for one.
func (c *corpus) addJSON(where string, doc []byte) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		c.add(where, string(doc))
		return
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				if k == "resourceVersion" || k == "managedFields" {
					continue
				}
				c.add(where, k)
				walk(child)
			}
		case []any:
			for _, child := range x {
				walk(child)
			}
		case string:
			if raw, ok := undumpHex(x); ok {
				// Its text column holds the same bytes, cut into lines.
				c.addDump(where+" (hex dump)", raw)
			} else {
				c.add(where, x)
			}
		case json.Number:
			c.add(where, x.String())
		}
	}
	walk(v)
}

// addDump adds the bytes of a hex dump. A whole Kubernetes protobuf body is
// decoded and added as JSON, so that its resourceVersion is skipped as in
// any other object: the API server's counters reach six digits, and one
// equal to a PIN would be a leak that is not. Other bytes are added as text.
func (c *corpus) addDump(where, raw string) {
	if obj, _, err := protobufCodec.Decode([]byte(raw), nil, nil); err == nil {
		if secret, ok := obj.(*corev1.Secret); ok {
			// As text, not base64, so that a PIN in it is a word.
			secret.StringData = map[string]string{}
			for k, v := range secret.Data {
				secret.StringData[k] = string(v)
			}
			secret.Data = nil
		}
		if doc, err := json.Marshal(obj); err == nil {
			c.addJSON(where, doc)
			return
		}
	}
	c.add(where, raw)
}

// protobufCodec decodes the protobuf bodies of the built-in kinds, as the
// API server sends them to client-go.
var protobufCodec = protobuf.NewSerializer(clientgoscheme.Scheme, clientgoscheme.Scheme)

// hexDumpLine is a line of encoding/hex.Dump, which client-go uses to log
// bodies that are not text (protobuf): a PIN in it may be split across lines
// in the text column.
var hexDumpLine = regexp.MustCompile(`^[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2}){1,16})`)

// undumpHex returns the bytes of a hex dump, or false when s is not one.
func undumpHex(s string) (string, bool) {
	if !strings.HasPrefix(s, "00000000  ") {
		return "", false
	}
	var raw []byte
	for _, line := range strings.Split(s, "\n") {
		m := hexDumpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
		if err != nil {
			return "", false
		}
		raw = append(raw, b...)
	}
	return string(raw), len(raw) > 0
}

// leakScan is everything the suite produced so far, ready to be searched.
type leakScan struct {
	corpora []*corpus
	// numericIDs appear legitimately (status, join URLs, events).
	numericIDs map[string]bool
	pins       map[string]string
}

// scanEverything gathers the manager's log, every Event of the cluster (both
// APIs), the status of every object of the operator's kinds, and the PINs
// recorded so far plus those of every PIN Secret the operator generated.
func scanEverything(g Gomega) *leakScan {
	s := &leakScan{numericIDs: map[string]bool{}, pins: map[string]string{}}

	secrets := &corev1.SecretList{}
	g.Expect(k8s.List(ctx(), secrets, client.HasLabels{"tenancy.visio.dev/vmr"})).To(Succeed())
	for i := range secrets.Items {
		recordSecret(&secrets.Items[i])
	}
	vmrs := &v1.VMRList{}
	g.Expect(k8s.List(ctx(), vmrs)).To(Succeed())
	for i := range vmrs.Items {
		recordNumericIDs(&vmrs.Items[i])
	}

	logs := newCorpus("manager log")
	g.Expect(keepingSuiteLog).To(BeTrue(), "the suite's log is not kept: the scan would read nothing")
	sc := bufio.NewScanner(bytes.NewReader(suiteLog.Bytes()))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		where := fmt.Sprintf("log line %d", line)
		logs.addJSON(where, sc.Bytes())
		var entry struct {
			NumericID string `json:"numericId"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.NumericID != "" {
			s.numericIDs[entry.NumericID] = true
		}
	}
	g.Expect(sc.Err()).NotTo(HaveOccurred())

	events := newCorpus("events")
	evs := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx(), evs)).To(Succeed())
	for i := range evs.Items {
		e := &evs.Items[i]
		events.addJSON("events.k8s.io Event "+e.Namespace+"/"+e.Name, mustJSON(g, e))
	}
	coreEvs := &corev1.EventList{}
	g.Expect(k8s.List(ctx(), coreEvs)).To(Succeed())
	for i := range coreEvs.Items {
		e := &coreEvs.Items[i]
		events.addJSON("core Event "+e.Namespace+"/"+e.Name, mustJSON(g, e))
	}

	statuses := newCorpus("statuses")
	for i := range vmrs.Items {
		v := &vmrs.Items[i]
		statuses.addJSON("VMR "+v.Namespace+"/"+v.Name, mustJSON(g, v.Status))
	}
	users := &v1.PlatformUserList{}
	g.Expect(k8s.List(ctx(), users)).To(Succeed())
	for i := range users.Items {
		u := &users.Items[i]
		statuses.addJSON("PlatformUser "+u.Namespace+"/"+u.Name, mustJSON(g, u.Status))
	}
	entities := &v1.EntityList{}
	g.Expect(k8s.List(ctx(), entities)).To(Succeed())
	for i := range entities.Items {
		statuses.addJSON("Entity "+entities.Items[i].Name, mustJSON(g, entities.Items[i].Status))
	}
	pools := &v1.LicensePoolList{}
	g.Expect(k8s.List(ctx(), pools)).To(Succeed())
	for i := range pools.Items {
		p := &pools.Items[i]
		statuses.addJSON("LicensePool "+p.Namespace+"/"+p.Name, mustJSON(g, p.Status))
	}
	s.corpora = []*corpus{logs, events, statuses}

	pinRecord.Lock()
	defer pinRecord.Unlock()
	for n := range pinRecord.numericIDs {
		s.numericIDs[n] = true
	}
	for p, where := range pinRecord.pins {
		s.pins[p] = where
	}
	return s
}

func mustJSON(g Gomega, v any) []byte {
	b, err := json.Marshal(v)
	g.Expect(err).NotTo(HaveOccurred())
	return b
}

// leaks returns a description of every place a PIN appears, and the PINs not
// searched for because they equal a room's numeric id.
func (s *leakScan) leaks() (found []string, ambiguous []string) {
	for pin, where := range s.pins {
		if s.numericIDs[pin] {
			ambiguous = append(ambiguous, pin)
			continue
		}
		for _, c := range s.corpora {
			for _, excerpt := range c.words[pin] {
				found = append(found, fmt.Sprintf("PIN of %s in %s: %s", where, c.name, excerpt))
			}
		}
	}
	sort.Strings(found)
	return found, ambiguous
}

// expectNoPINLeak fails the test when a PIN recorded so far appears in the
// logs, events or statuses of the suite so far. Tests that make rooms call it
// before their entity goes, while the events of its namespace still exist.
func expectNoPINLeak(t *testing.T) {
	t.Helper()
	g := NewWithT(t)
	s := scanEverything(g)
	found, ambiguous := s.leaks()
	if len(ambiguous) > 0 {
		t.Logf("%d PINs equal to a room's numeric id not searched for", len(ambiguous))
	}
	for _, f := range found {
		t.Error(f)
	}
}

// TestPINLeak drives rooms through every path where the operator holds PINs
// (generated and given PINs, rotation, invalid PINs, backend conflicts, and
// backend errors whose answers quote the request with its PINs), with both
// backends, then scans everything the suite produced so far and finds none of
// the PINs seen.
func TestPINLeak(t *testing.T) {
	g := NewWithT(t)
	startPINRecorder(t)

	// The scan finds a PIN where there is one, in each form it could leak in.
	probe := newCorpus("probe")
	probe.addJSON("json", []byte(`{"msg":"x","error":"HTTP 400: {\"pin\":\"482915\"}"}`))
	probe.add("text", "cannot set pin=739164; guest PIN 551902.")
	probe.add("noise", "uid 3f482915ab, at 2026-01-01T10:00:00.739164Z, 1551902, 551902.5")
	// client-go's dump of a protobuf body, the PIN split across two lines.
	body := append(bytes.Repeat([]byte{0x0a}, 13), append([]byte{0x12, 0x06}, "204817\x1a\x06Opaque"...)...)
	probe.addJSON("dump", mustJSON(g, map[string]string{"body": hex.Dump(body)}))
	// A whole protobuf body of a Secret: its PIN is found, its
	// resourceVersion, equal to another PIN, is not.
	var pb bytes.Buffer
	g.Expect(protobufCodec.Encode(&corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "s", ResourceVersion: "630118"},
		Data:       map[string][]byte{"hostPIN": []byte("917342")},
	}, &pb)).To(Succeed())
	probe.addJSON("protobuf dump", mustJSON(g, map[string]string{"body": hex.Dump(pb.Bytes())}))
	self := &leakScan{corpora: []*corpus{probe}, pins: map[string]string{
		"482915": "a", "739164": "b", "551902": "c", "204817": "d", "917342": "e", "630118": "f"}}
	found, _ := self.leaks()
	g.Expect(found).To(HaveLen(5), "the scan misses PINs or sees some where there are none: %v", found)
	g.Expect(strings.Join(found, "\n")).NotTo(ContainSubstring("PIN of f "), "a resourceVersion taken for a PIN")

	_, ns := newEntity(t, g)
	newPool(g, ns, "default", 2, v1.EnforcementQueue)
	g.Expect(k8s.Create(ctx(), newUser(ns, "owner", true))).To(Succeed())

	// Embedded backend (the shared manager).
	emb := newVMR(ns, "embedded", func(v *v1.VMR) { v.Spec.AllowGuests = true; v.Spec.Owner = "owner" })
	g.Expect(k8s.Create(ctx(), emb)).To(Succeed())
	got := waitReady(g, client.ObjectKeyFromObject(emb))
	rotatePINs(g, ns, got.Status.PINSecretName)
	deleteAndWait(g, got)

	// Pexip, with answers that quote the request and few retries, so that
	// such answers reach the controller, its status, events and logs.
	bed := startPexip(t, g, func(c *pexip.Config) { c.MaxRetries = 1 }, func(o *operator.Options) {
		o.DriftCheckInterval = 2 * time.Second
	})
	t.Cleanup(func() { expectNoPINLeak(t) })

	// Given PINs, and a Secret with weak ones created after its room.
	given := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "given-pins"},
		Data: map[string][]byte{pins.HostPINKey: []byte("7305918264"), pins.GuestPINKey: []byte("4829105736")}}
	recordPINs("7305918264", "4829105736", "0123456789", "9876543210")
	g.Expect(k8s.Create(ctx(), given)).To(Succeed())
	withGiven := newVMR(ns, "given", func(v *v1.VMR) {
		v.Spec.AllowGuests = true
		v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "given-pins"}
	})
	weak := newVMR(ns, "weak", func(v *v1.VMR) { v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "weak-pins"} })
	g.Expect(k8s.Create(ctx(), withGiven)).To(Succeed())
	g.Expect(k8s.Create(ctx(), weak)).To(Succeed())
	g.Expect(k8s.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "weak-pins"},
		Data: map[string][]byte{pins.HostPINKey: []byte("0123456789"), pins.GuestPINKey: []byte("9876543210")}})).To(Succeed())
	// Admission refuses a room naming the weak Secret, without quoting it.
	err := k8s.Create(ctx(), newVMR(ns, "weak2", func(v *v1.VMR) { v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "weak-pins"} }))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).NotTo(Or(ContainSubstring("0123456789"), ContainSubstring("9876543210")))

	waitReady(g, client.ObjectKeyFromObject(withGiven))
	waitBlocked(g, client.ObjectKeyFromObject(weak), v1.ReasonInvalidPINs)

	// A create whose answer quotes the request, twice: the error reaches the status.
	bed.srv.FailNext("POST conference", pexiptest.FaultErrorQuotingRequest, pexiptest.FaultErrorQuotingRequest)
	quoted := newVMR(ns, "quoted", func(v *v1.VMR) { v.Spec.AllowGuests = true })
	g.Expect(k8s.Create(ctx(), quoted)).To(Succeed())
	got = waitReady(g, client.ObjectKeyFromObject(quoted))
	g.Expect(eventReasons(g, got)).To(ContainElement(v1.ReasonBackendError))
	bed.expectRoom(g, got)

	// Rotation whose updates are answered the same way.
	bed.srv.FailNext("PATCH conference", pexiptest.FaultErrorQuotingRequest, pexiptest.FaultErrorQuotingRequest)
	rotatePINs(g, ns, got.Status.PINSecretName)
	g.Eventually(func(g Gomega) {
		v := &v1.VMR{}
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(quoted), v)).To(Succeed())
		beReady(g, v)
		bed.expectRoom(g, v)
	}).WithTimeout(vmrTimeout).WithPolling(vmrPolling).Should(Succeed())

	// A conflict, and drift repaired by writing the PINs again.
	bed.srv.CreateRoomByHand("Room taken (7777002)")
	conflict := newVMR(ns, "taken", func(v *v1.VMR) {
		v.Spec.AllowGuests = true
		v.Spec.NumericID = "7777002"
	})
	g.Expect(k8s.Create(ctx(), conflict)).To(Succeed())
	waitBlocked(g, client.ObjectKeyFromObject(conflict), v1.ReasonBackendConflict)
	room := bed.expectRoom(g, got)
	bed.srv.EditRoomByHand(room.ID, func(c *pexiptest.Conference) { c.PIN, c.GuestPIN = "", "" })
	waitVMR(g, client.ObjectKeyFromObject(quoted), func(g Gomega, v *v1.VMR) { bed.expectRoom(g, v) })

	for _, v := range []*v1.VMR{quoted, withGiven, weak, conflict} {
		deleteAndWait(g, v)
	}

	s := scanEverything(g)
	found, ambiguous := s.leaks()
	t.Logf("searched %d PINs (%d equal to a room number left out) in %d log words, %d event words, %d status words",
		len(s.pins), len(ambiguous), len(s.corpora[0].words), len(s.corpora[1].words), len(s.corpora[2].words))
	g.Expect(len(s.pins)).To(BeNumerically(">=", 14), "fewer PINs seen than the test made")
	g.Expect(len(s.corpora[0].words)).To(BeNumerically(">", 0), "the manager logged nothing")
	g.Expect(found).To(BeEmpty())
}
