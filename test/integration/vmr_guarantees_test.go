package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/pexip"
	"visio.dev/operator/internal/backend/pexip/pexiptest"
	"visio.dev/operator/internal/controller"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/operator"
	"visio.dev/operator/internal/pins"
)

// TestVMRPexipFaults provisions and deletes rooms through a Pexip server that
// fails 30% of the requests (10% each: 429, 5xx and timeouts, half of these
// two after applying the request) and holds 10% of the creates more, to
// commit them long after the client gave up, while the manager is killed
// mid create and mid delete: no room is ever duplicated, every dial string a
// status advertises is on the server, and once the VMRs are gone no room of
// ours is left (counted by tag), the late creates included.
//
// 40 rooms in the normal suite; VISIO_BENCH=1 runs 500 (VISIO_FAULT_ROOMS
// sets another number).
func TestVMRPexipFaults(t *testing.T) {
	g := NewWithT(t)
	n := 40
	if os.Getenv("VISIO_BENCH") != "" {
		n = 500
	}
	n = envInt(t, "VISIO_FAULT_ROOMS", n)
	_, ns := newEntity(t, g)
	const hang = 4 * time.Second
	bed := startPexip(t, g, func(c *pexip.Config) {
		c.RequestTimeout = 400 * time.Millisecond
		c.MaxRetries = 2 // so that failures reach the controller too
	}, func(o *operator.Options) { o.DriftCheckInterval = 3 * time.Second })
	if n <= 100 {
		// At 500 rooms the thousand random 6-to-8-digit PINs meet the
		// millions of numbers of a debug log (resourceVersions in event
		// dumps) by chance; the scan is left to the normal suite's size.
		t.Cleanup(func() { expectNoPINLeak(t) })
	} else {
		startPINRecorder(t)
	}
	bed.srv.SetFaults(pexiptest.Faults{RateLimitRate: 0.10, ErrorRate: 0.10, TimeoutRate: 0.10, LateApplyRate: 0.10, Hang: hang, Seed: 5})

	vmrs := make([]*v1.VMR, n)
	create := func(i int) {
		vmrs[i] = newVMR(ns, fmt.Sprintf("room-%03d", i), func(v *v1.VMR) {
			v.Spec.Aliases = []string{fmt.Sprintf("room-%03d@%s.example", i, ns)}
			v.Spec.AllowGuests = i%2 == 0
		})
		g.Expect(k8s.Create(ctx(), vmrs[i])).To(Succeed())
	}
	// Killed mid create: half the rooms are asked for, the manager dies as
	// soon as the server has seen creates, the rest come with its successor.
	for i := range n / 2 {
		create(i)
	}
	g.Eventually(func() int { return bed.srv.Operations()["create conference"] }).WithTimeout(vmrTimeout).Should(BeNumerically(">", 0))
	bed.crash(func() {})
	for i := n / 2; i < n; i++ {
		create(i)
	}
	// Rooms that keep failing back off (per room, and 10 requeues a second
	// overall): at 500 rooms this takes minutes, so all are awaited at once.
	start := time.Now()
	waitAllReady(g, ns, n, 20*time.Minute)
	t.Logf("%d rooms Ready under faults after %s", n, time.Since(start).Round(time.Second))
	// Counted first, for the report, then checked room by room.
	duplicates, missing := 0, 0
	for i := range n {
		got := &v1.VMR{}
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(vmrs[i]), got)).To(Succeed())
		rooms := bed.roomsOf(got)
		duplicates += max(len(rooms)-1, 0)
		advertised := append([]string{got.Status.NumericID, strings.TrimPrefix(got.Status.SIPURI, "sip:")}, got.Status.Aliases...)
		for _, d := range advertised {
			if len(rooms) == 0 || !slices.ContainsFunc(rooms[0].Aliases, func(a pexiptest.Alias) bool { return a.Alias == d }) {
				missing++
			}
		}
	}
	t.Logf("%d rooms Ready under faults: %d duplicate rooms, %d advertised dial strings missing on the server", n, duplicates, missing)
	for i := range n {
		got := &v1.VMR{}
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(vmrs[i]), got)).To(Succeed())
		bed.expectRoom(g, got) // exactly one room, every advertised dial string
	}
	ops := bed.srv.Operations()
	t.Logf("requests to provision %d rooms under faults: %v", n, ops)

	// Killed mid delete.
	for i := range n {
		g.Expect(k8s.Delete(ctx(), vmrs[i])).To(Succeed())
	}
	g.Eventually(func() int { return bed.srv.Operations()["delete conference"] - ops["delete conference"] }).
		WithTimeout(vmrTimeout).Should(BeNumerically(">", 0))
	bed.crash(func() {})
	g.Eventually(func(g Gomega) {
		list := &v1.VMRList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(BeEmpty())
	}).WithTimeout(20 * time.Minute).WithPolling(time.Second).Should(Succeed())
	// Creates that land late are found by the sweep at a drift check.
	g.Eventually(func() []pexiptest.Conference { return bed.ourRooms() }).WithTimeout(vmrTimeout).Should(BeEmpty(),
		"rooms left after their VMRs were deleted")
	g.Consistently(func() []pexiptest.Conference { return bed.ourRooms() }).WithTimeout(hang+4*time.Second).Should(BeEmpty(),
		"a late create left a room behind")
	t.Logf("after deleting the %d VMRs: %d rooms left under the operator's tags (orphans); faults served %v; requests %v",
		n, len(bed.ourRooms()), bed.srv.Injected(), bed.srv.Operations())
	claims := &v1.DialStringClaimList{}
	g.Expect(k8s.List(ctx(), claims)).To(Succeed())
	for _, c := range claims.Items {
		g.Expect(c.Spec.VMR.Namespace).NotTo(Equal(ns), "claim of a deleted room left: %+v", c.Spec)
	}
}

// TestVMRPexipLateCreateSwept: a create that commits on the node after its
// client gave up, and after its VMR was deleted (the finalizer found nothing
// by key), is removed at the next drift check; a room without our key is not.
func TestVMRPexipLateCreateSwept(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	const hang = 5 * time.Second
	bed := startPexip(t, g, func(c *pexip.Config) {
		c.RequestTimeout = 300 * time.Millisecond
		c.MaxRetries = -1
	}, func(o *operator.Options) { o.DriftCheckInterval = 2 * time.Second })
	t.Cleanup(func() { expectNoPINLeak(t) })
	bed.srv.CreateRoomByHand("somebody's room", "hand@"+ns+".example")
	bed.srv.SetFaults(pexiptest.Faults{Hang: hang})
	bed.srv.FailNext("POST conference", pexiptest.FaultLateApply, pexiptest.FaultLateApply, pexiptest.FaultLateApply)

	vmr := newVMR(ns, "late", nil)
	g.Expect(k8s.Create(ctx(), vmr)).To(Succeed())
	g.Eventually(func() int { return bed.srv.Requests()["POST conference"] }).WithTimeout(vmrTimeout).Should(BeNumerically(">", 0))
	deleteAndWait(g, vmr)
	// The late create lands, then the sweep removes it.
	g.Eventually(func() int { return len(bed.ourRooms()) }).WithTimeout(hang + 5*time.Second).Should(BeNumerically(">", 0))
	g.Eventually(func() []pexiptest.Conference { return bed.ourRooms() }).WithTimeout(vmrTimeout).Should(BeEmpty())
	g.Expect(bed.srv.Rooms()).To(HaveLen(1), "the hand-made room must stay")
}

// TestVMRPexipIDReusedAfterRestore: the node is restored from a backup taken
// before the room existed, and the id recorded in the VMR's status is handed
// to somebody else's room. The drift check finds the foreign tag there and
// leaves that room untouched; the VMR gets a room of its own again.
func TestVMRPexipIDReusedAfterRestore(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	bed := startPexip(t, g, nil, func(o *operator.Options) { o.DriftCheckInterval = 2 * time.Second })
	t.Cleanup(func() { expectNoPINLeak(t) })
	backup := bed.srv.Snapshot()
	vmr := newVMR(ns, "restored", nil)
	g.Expect(k8s.Create(ctx(), vmr)).To(Succeed())
	got := waitReady(g, client.ObjectKeyFromObject(vmr))
	old := got.Status.BackendRef

	bed.srv.Restore(backup)
	foreign := bed.srv.CreateRoomByHand("somebody's room", "foreign@"+ns+".example")
	g.Expect(strconv.Itoa(foreign)).To(Equal(old), "the restored node hands the id out again")
	theirs := bed.srv.Rooms()[0]

	got = waitVMR(g, client.ObjectKeyFromObject(vmr), func(g Gomega, v *v1.VMR) {
		beReady(g, v)
		g.Expect(v.Status.BackendRef).NotTo(Equal(old))
		bed.expectRoom(g, v)
	})
	g.Expect(eventReasons(g, got)).To(ContainElement(v1.ReasonBackendConflict))
	g.Expect(bed.srv.Rooms()).To(ContainElement(theirs), "the foreign room was changed")
	deleteAndWait(g, got)
	g.Expect(bed.srv.Rooms()).To(Equal([]pexiptest.Conference{theirs}), "the foreign room was removed or changed")
}

// TestVMRPINRotation: PINs rotated while the manager is stopped reach the
// backend at the restart's first reconcile, and PINs rotated in a Secret
// named by pinSecretRef while it runs reach it on the Secret's change, with
// drift checks off in both cases (they play no part).
func TestVMRPINRotation(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	bed := startPexip(t, g, nil, func(o *operator.Options) { o.DriftCheckInterval = 0 })
	t.Cleanup(func() { expectNoPINLeak(t) })

	host, guest, err := pins.Generate(8)
	g.Expect(err).NotTo(HaveOccurred())
	recordPINs(host, guest)
	g.Expect(k8s.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "named-pins"},
		Data: map[string][]byte{pins.HostPINKey: []byte(host), pins.GuestPINKey: []byte(guest)}})).To(Succeed())
	named := newVMR(ns, "named", func(v *v1.VMR) {
		v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "named-pins"}
		v.Spec.AllowGuests = true
	})
	generated := newVMR(ns, "generated", nil)
	g.Expect(k8s.Create(ctx(), named)).To(Succeed())
	g.Expect(k8s.Create(ctx(), generated)).To(Succeed())
	bed.expectRoom(g, waitReady(g, client.ObjectKeyFromObject(named)))
	gen := waitReady(g, client.ObjectKeyFromObject(generated))
	bed.expectRoom(g, gen)

	// While running: the named Secret changes, the room follows at once.
	rotatePINs(g, ns, "named-pins")
	waitVMR(g, client.ObjectKeyFromObject(named), func(g Gomega, v *v1.VMR) { bed.expectRoom(g, v) })

	// While stopped: both Secrets change; the new manager applies them.
	bed.crash(func() {
		rotatePINs(g, ns, "named-pins")
		rotatePINs(g, ns, gen.Status.PINSecretName)
	})
	for _, v := range []*v1.VMR{named, generated} {
		got := waitVMR(g, client.ObjectKeyFromObject(v), func(g Gomega, v *v1.VMR) { bed.expectRoom(g, v) })
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: got.Status.PINSecretName}, s)).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(v), got)).To(Succeed())
			g.Expect(got.Status.PINSecretResourceVersion).To(Equal(s.ResourceVersion))
		}).WithTimeout(vmrTimeout).Should(Succeed())
	}
	for _, v := range []*v1.VMR{named, generated} {
		deleteAndWait(g, v)
	}
}

// TestVMRAliasRace: twenty times, two rooms of two namespaces ask for one
// alias at the same instant, with admission out of the way and two managers
// reconciling at once (the worst case of two replicas: both acting). A watch
// never sees both Ready, and exactly one ends Ready, the other AliasConflict.
func TestVMRAliasRace(t *testing.T) {
	g := NewWithT(t)
	startPINRecorder(t)
	_, nsA := newEntity(t, g)
	_, nsB := newEntity(t, g)
	t.Cleanup(func() { expectNoPINLeak(t) })
	bypassWebhook(t, g, "vvmr.tenancy.visio.dev")
	stop := startReplica(t, testOptions())
	defer stop()

	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	for round := range 20 {
		alias := fmt.Sprintf("race-%02d@visio.example", round)
		a := newVMR(nsA, fmt.Sprintf("race-%02d", round), func(v *v1.VMR) { v.Spec.Aliases = []string{alias} })
		b := newVMR(nsB, fmt.Sprintf("race-%02d", round), func(v *v1.VMR) { v.Spec.Aliases = []string{alias} })

		w, err := wc.Watch(ctx(), &v1.VMRList{})
		g.Expect(err).NotTo(HaveOccurred())
		both := make(chan string, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			ready := map[string]bool{}
			for ev := range w.ResultChan() {
				v, ok := ev.Object.(*v1.VMR)
				if !ok || v.Name != a.Name {
					continue
				}
				ready[v.Namespace] = ev.Type != watch.Deleted && meta.IsStatusConditionTrue(v.Status.Conditions, v1.ReadyCondition)
				if ready[nsA] && ready[nsB] {
					select {
					case both <- fmt.Sprintf("round %d: both rooms Ready at resourceVersion %s", round, v.ResourceVersion):
					default:
					}
				}
			}
		})
		var start sync.WaitGroup
		start.Add(1)
		var cw sync.WaitGroup
		for _, v := range []*v1.VMR{a, b} {
			cw.Go(func() {
				start.Wait()
				g.Expect(k8s.Create(ctx(), v)).To(Succeed())
			})
		}
		start.Done()
		cw.Wait()

		var winner, loser *v1.VMR
		g.Eventually(func(g Gomega) {
			winner, loser = nil, nil
			for _, v := range []*v1.VMR{a, b} {
				got := &v1.VMR{}
				g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(v), got)).To(Succeed())
				ready := meta.FindStatusCondition(got.Status.Conditions, v1.ReadyCondition)
				g.Expect(ready).NotTo(BeNil())
				g.Expect(ready.ObservedGeneration).To(Equal(got.Generation))
				switch ready.Reason {
				case v1.ReasonProvisioned:
					winner = got
				case v1.ReasonAliasConflict:
					loser = got
				}
			}
			g.Expect(winner).NotTo(BeNil(), "round %d: no room holds the alias", round)
			g.Expect(loser).NotTo(BeNil(), "round %d: no room lost", round)
		}).WithTimeout(vmrTimeout).WithPolling(vmrPolling).Should(Succeed())
		g.Expect(loser.Status.Aliases).To(BeEmpty())
		g.Expect(loser.Status.JoinURL).To(BeEmpty())
		w.Stop()
		wg.Wait()
		select {
		case msg := <-both:
			t.Fatal(msg)
		default:
		}
		deleteAndWait(g, a)
		deleteAndWait(g, b)
	}
}

// startReplica runs a second VMR controller beside the shared manager's, in
// a manager of its own without leader election: both reconcile every room,
// as two replicas would during a split brain.
func startReplica(t *testing.T, opts operator.Options) (stop func()) {
	t.Helper()
	mcfg := rest.CopyConfig(managerCfg)
	mcfg.QPS, mcfg.Burst = 500, 1000
	mgr, err := ctrl.NewManager(mcfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  operator.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	if err := index.Setup(c, mgr.GetFieldIndexer()); err != nil {
		t.Fatal(err)
	}
	r := &controller.VMRReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("vmr-controller"), Backend: opts.Backend,
		NumericIDMin: opts.NumericIDs.Min, NumericIDMax: opts.NumericIDs.Max, JoinBaseURL: opts.JoinBaseURL, SIPDomain: opts.SIPDomain,
		DriftCheckInterval: opts.DriftCheckInterval, BackendTimeout: opts.BackendTimeout, MaxConcurrentReconciles: opts.MaxConcurrentReconciles}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mgr.Start(c)
	}()
	if !mgr.GetCache().WaitForCacheSync(c) {
		t.Fatal("cache did not sync")
	}
	return func() {
		cancel()
		<-done
	}
}

// TestVMRNameLimits: a VMR name the operator could not turn into its PIN
// Secret's label is refused by the API server itself (no webhook needed),
// naming metadata.name; the longest admitted name provisions.
func TestVMRNameLimits(t *testing.T) {
	g := NewWithT(t)
	startPINRecorder(t)
	_, ns := newEntity(t, g)
	t.Cleanup(func() { expectNoPINLeak(t) })
	bypassWebhook(t, g, "vvmr.tenancy.visio.dev")
	long := newVMR(ns, strings.Repeat("a", 64), func(v *v1.VMR) { v.Spec.DisplayName = strings.Repeat("é", 250) })
	err := k8s.Create(ctx(), long)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "a 64-character name: %v", err)
	g.Expect(err.Error()).To(ContainSubstring("metadata.name"))
	longest := newVMR(ns, strings.Repeat("a", 63), func(v *v1.VMR) { v.Spec.DisplayName = strings.Repeat("é", 250) })
	g.Expect(k8s.Create(ctx(), longest)).To(Succeed())
	got := waitReady(g, client.ObjectKeyFromObject(longest))
	g.Expect(got.Status.PINSecretName).To(Equal(strings.Repeat("a", 63) + "-pins"))
	deleteAndWait(g, got)
}

// TestVMRPexipOwnerSetLater: a room made by a release before owners (tagged
// visio-<uid>) stays its VMR's once an upgrade sets an owner: the same room,
// moved under the owner at the next drift check, deleted with its VMR.
// Another installation's rooms on the node, an orphan among them, are never
// swept nor changed.
func TestVMRPexipOwnerSetLater(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	const drift = 2 * time.Second
	bed := startPexip(t, g, func(c *pexip.Config) { c.Owner = "" }, func(o *operator.Options) { o.DriftCheckInterval = drift })
	t.Cleanup(func() { expectNoPINLeak(t) })
	vmr := newVMR(ns, "before-owners", nil)
	g.Expect(k8s.Create(ctx(), vmr)).To(Succeed())
	got := waitReady(g, client.ObjectKeyFromObject(vmr))
	before := bed.expectRoom(g, got)
	g.Expect(before.Tag).To(Equal("visio-" + string(got.UID)))

	newClient := func(owner string) *pexip.Client {
		c, err := pexip.New(pexip.Config{URL: bed.srv.URL, Username: pexipUser, Password: pexipPassword, Owner: owner,
			RequestTimeout: 2 * time.Second, RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: 500 * time.Millisecond})
		g.Expect(err).NotTo(HaveOccurred())
		return c
	}
	lyon := newClient("lyon")
	for i, uid := range []string{"0b1c5d9e-orphan-of-lyon", "0b1c5d9e-live-in-lyon"} {
		_, err := lyon.Create(ctx(), backend.Room{Key: "visio-" + uid, Name: uid, NumericID: strconv.Itoa(555000 + i)})
		g.Expect(err).NotTo(HaveOccurred())
	}
	theirs := func() []pexiptest.Conference {
		var out []pexiptest.Conference
		for _, c := range bed.srv.Rooms() {
			if strings.HasPrefix(c.Tag, "lyon:") {
				out = append(out, c)
			}
		}
		return out
	}
	lyonRooms := theirs()
	g.Expect(lyonRooms).To(HaveLen(2))

	bed.crash(func() {
		bed.opts.Backend = newClient(testPexipOwner)
		bed.owner = testPexipOwner
	})
	g.Eventually(func(g Gomega) {
		rooms := bed.roomsOf(got)
		g.Expect(rooms).To(HaveLen(1), "the room under the owner's tag")
		g.Expect(rooms[0].ID).To(Equal(before.ID), "the room was made again")
	}).WithTimeout(vmrTimeout).WithPolling(vmrPolling).Should(Succeed())
	bed.expectRoom(g, got)
	g.Consistently(theirs).WithTimeout(3*drift).Should(Equal(lyonRooms), "another installation's rooms were swept or changed")
	deleteAndWait(g, got)
	g.Expect(bed.srv.Rooms()).To(Equal(lyonRooms))
}
