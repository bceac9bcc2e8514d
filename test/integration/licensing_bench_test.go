package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// Shape of the burst: pools of one entity, 100 users each. The first half
// are Deny pools with room for everyone (every create goes through the
// admission reservation); the second half are Queue pools of 90, so 10 users
// of each wait. BURST_POOLS changes the number of pools (default 20: 2,000
// users; 100 gives 10,000 users).
const (
	burstUsersPerPool = 100
	burstClients      = 64
	burstQueueSize    = 90
)

func burstPools() int {
	if n, err := strconv.Atoi(os.Getenv("BURST_POOLS")); err == nil && n >= 2 {
		return n
	}
	return 20
}

// BenchmarkUserBurst measures the operator against the floor, in one run on
// one control plane:
//
//	make bench-burst                    # 2,000 users, 20 pools
//	make bench-burst BURST_POOLS=100    # 10,000 users, 100 pools
//
// The floor is the same clients creating the same number of objects of a
// plain CRD (no webhook, no controller), each followed by one status write:
// the two writes per user the operator cannot do without. The minimal
// operator is the same plain objects admitted by a webhook that allows
// everything and given their status by a controller: what any operator with
// a webhook and a controller pays here, so that the operator's own cost is
// the ratio to it. The operator's
// settle time runs from the first create to the moment every pool and every
// user shows its final status. It prints both, their ratio, creates per
// second, the manager's writes per user by resource (counted exactly by a
// transport around the manager's client), and the admission latency p50/p99
// of the PlatformUser webhook from the API server's
// apiserver_admission_webhook_admission_duration_seconds.
func BenchmarkUserBurst(b *testing.B) {
	counter := &writeCounter{}
	withManager(b, counter, func(*operator.Options) {})
	pools := burstPools()
	users := pools * burstUsersPerPool
	g := NewWithT(b)
	b.StopTimer()
	for range b.N {
		floorCPU, floorProcess := readControlPlane(g), processCPU(g)
		stopProfile := profilePhase(g, "floor", 6)
		floor, floorCreates := floorBurst(b, g, users)
		stopProfile()
		floorCPU, floorProcess = readControlPlane(g).minus(floorCPU), processCPU(g)-floorProcess
		minimalCPU, minimalProcess, minimalAdmission := readControlPlane(g), processCPU(g), admissionHistogramOf(g, minimalWebhook)
		stopProfile = profilePhase(g, "minimal", 6)
		minimal, _ := minimalOperatorBurst(b, g, users)
		stopProfile()
		minimalCPU, minimalProcess = readControlPlane(g).minus(minimalCPU), processCPU(g)-minimalProcess
		minimalAdmission = admissionHistogramOf(g, minimalWebhook).minus(minimalAdmission)

		_, ns := newEntity(b, g)
		for p := range pools {
			if p < pools/2 {
				newPool(g, ns, fmt.Sprintf("pool-%03d", p), burstUsersPerPool, v1.EnforcementDeny)
			} else {
				newPool(g, ns, fmt.Sprintf("pool-%03d", p), burstQueueSize, v1.EnforcementQueue)
			}
		}
		before := counter.snapshot()
		admissionBefore, handlerBefore := admissionHistogram(g), handlerHistogram(g)
		cpuBefore, processBefore := readControlPlane(g), processCPU(g)
		b.StartTimer()
		start := time.Now()
		stopProfile = profilePhase(g, "operator", 6)
		userCreates := createBurst(g, ns, pools)
		create := time.Since(start)
		waitBurstSettled(g, ns, pools)
		settle := time.Since(start)
		b.StopTimer()
		stopProfile()
		burstCPU, burstProcess := readControlPlane(g).minus(cpuBefore), processCPU(g)-processBefore
		admission := admissionHistogram(g).minus(admissionBefore)
		handler := handlerHistogram(g).minus(handlerBefore)
		writes := map[string]int64{}
		for k, v := range counter.snapshot() {
			writes[k] = v - before[k]
		}

		perUser := func(k string) float64 { return float64(writes[k]) / float64(users) }
		b.ReportMetric(settle.Seconds(), "s-to-settle")
		b.ReportMetric(floor.Seconds(), "s-floor")
		b.ReportMetric(settle.Seconds()/floor.Seconds(), "ratio")
		b.ReportMetric(settle.Seconds()/minimal.Seconds(), "ratio-to-minimal")
		b.ReportMetric(minimalAdmission.quantile(0.99)*1000, "minimal-admission-p99-ms")
		b.ReportMetric(float64(users)/create.Seconds(), "creates/s")
		b.ReportMetric(perUser(allWrites), "manager-writes/user")
		b.ReportMetric(admission.quantile(0.5)*1000, "admission-p50-ms")
		b.ReportMetric(admission.quantile(0.99)*1000, "admission-p99-ms")
		var resources []string
		for k := range writes {
			if k != allWrites && writes[k] > 0 {
				resources = append(resources, k)
			}
		}
		sort.Strings(resources)
		var by []string
		for _, k := range resources {
			by = append(by, fmt.Sprintf("%s %.3f", k, perUser(k)))
		}
		b.Logf("%d users, %d pools, %d clients: settle %.1fs, floor %.1fs, ratio %.2f, creates %.1fs (%.0f/s)",
			users, pools, burstClients, settle.Seconds(), floor.Seconds(), settle.Seconds()/floor.Seconds(), create.Seconds(), float64(users)/create.Seconds())
		b.Logf("minimal operator (a webhook that allows everything, a controller that writes each status once): settle %.1fs, operator ÷ minimal %.2f; its webhook p50 %.1f ms, p99 %.1f ms; CPU per object: kube-apiserver %.2f ms, etcd %.2f ms",
			minimal.Seconds(), settle.Seconds()/minimal.Seconds(), minimalAdmission.quantile(0.5)*1000, minimalAdmission.quantile(0.99)*1000,
			minimalCPU.apiserver*1000/float64(users), minimalCPU.etcd*1000/float64(users))
		b.Logf("manager writes per user %.3f: %s", perUser(allWrites), strings.Join(by, ", "))
		b.Logf("create latency seen by the clients: users p50 %.1f ms, p99 %.1f ms; floor p50 %.1f ms, p99 %.1f ms",
			userCreates.quantile(0.5), userCreates.quantile(0.99), floorCreates.quantile(0.5), floorCreates.quantile(0.99))
		b.ReportMetric(floorCreates.quantile(0.99), "floor-create-p99-ms")
		perUserMS := func(seconds float64) float64 { return seconds * 1000 / float64(users) }
		b.Logf("control plane CPU per user (ms): kube-apiserver %.2f, etcd %.2f; floor: kube-apiserver %.2f, etcd %.2f (settle polls included)",
			perUserMS(burstCPU.apiserver), perUserMS(burstCPU.etcd), perUserMS(floorCPU.apiserver), perUserMS(floorCPU.etcd))
		b.ReportMetric(burstCPU.apiserver/floorCPU.apiserver, "apiserver-cpu-ratio")
		b.Logf("this process's CPU per user (ms; the clients, and the manager under test): operator %.2f, minimal operator %.2f, floor %.2f",
			perUserMS(burstProcess), perUserMS(minimalProcess), perUserMS(floorProcess))
		b.Logf("requests served per user by the API server: %s; floor: %s",
			burstCPU.topRequests(8, users), floorCPU.topRequests(4, users))
		b.Logf("admission (PlatformUser webhook, %d calls): p50 %.1f ms, p99 %.1f ms, mean %.1f ms; in the operator's handler: p50 %.1f ms, p99 %.1f ms (coarse buckets), mean %.1f ms",
			int64(admission.count), admission.quantile(0.5)*1000, admission.quantile(0.99)*1000, admission.mean()*1000,
			handler.quantile(0.5)*1000, handler.quantile(0.99)*1000, handler.mean()*1000)
	}
}

// createBurst creates the users from burstClients concurrent clients.
func createBurst(g Gomega, ns string, pools int) *latencies {
	return timedCreates(g, pools*burstUsersPerPool, func(i int) client.Object {
		p := i / burstUsersPerPool
		u := newUser(ns, fmt.Sprintf("p%03d-u%03d", p, i%burstUsersPerPool), true)
		u.Spec.LicensePool = fmt.Sprintf("pool-%03d", p)
		return u
	}, nil)
}

// timedCreates creates the n objects newObject returns from burstClients
// concurrent clients, timing each create, and runs then (when not nil) on
// each object its client created.
func timedCreates(g Gomega, n int, newObject func(i int) client.Object, then func(client.Object)) *latencies {
	creates := &latencies{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, burstClients)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			o := newObject(i)
			t0 := time.Now()
			g.Expect(k8s.Create(ctx(), o)).To(Succeed())
			creates.add(time.Since(t0))
			if then != nil {
				then(o)
			}
		}()
	}
	wg.Wait()
	return creates
}

// latencies collects request durations seen by the clients, for exact
// quantiles.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d = append(l.d, d)
}

// quantile returns the q-quantile in milliseconds.
func (l *latencies) quantile(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	return float64(l.d[min(int(q*float64(len(l.d))), len(l.d)-1)]) / float64(time.Millisecond)
}

// waitBurstSettled waits until every pool reports its final counts and every
// user its final Licensed condition for its current generation.
func waitBurstSettled(g Gomega, ns string, pools int) {
	// The pools are polled, and the users (thousands of objects, a heavy
	// list for the API server the burst is measured on) read only once the
	// pools show their final counts: a pass writes its users' statuses
	// before its pool's counts.
	g.Eventually(func(g Gomega) {
		list := &v1.LicensePoolList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		for _, p := range list.Items {
			want := min(int32(burstUsersPerPool), *p.Spec.Licenses)
			g.Expect(p.Status.Used).To(Equal(want), "pool %s used", p.Name)
			g.Expect(p.Status.Pending).To(Equal(int32(burstUsersPerPool)-want), "pool %s pending", p.Name)
		}
		users := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), users, client.InNamespace(ns))).To(Succeed())
		g.Expect(users.Items).To(HaveLen(pools * burstUsersPerPool))
		for i := range users.Items {
			u := &users.Items[i]
			g.Expect(u.Status.ObservedGeneration).To(Equal(u.Generation), "user %s", u.Name)
			g.Expect(meta.FindStatusCondition(u.Status.Conditions, v1.LicensedCondition)).NotTo(BeNil(), "user %s", u.Name)
		}
	}).WithTimeout(30 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
}

// floorGVK is the plain CRD of the floor: no webhook, no controller.
var floorGVK = schema.GroupVersionKind{Group: "bench.visio.dev", Version: "v1", Kind: "Plain"}

// floorBurst creates n objects of a plain CRD from burstClients concurrent
// clients, each followed by one status write, in a namespace of its own, and
// returns how long that took.
func floorBurst(b *testing.B, g Gomega, n int) (time.Duration, *latencies) {
	ns := plainNamespace(b, g, "floor")
	start := time.Now()
	creates := timedCreates(g, n, func(i int) client.Object { return newPlain(ns, i) }, func(o client.Object) {
		plain := o.(*unstructured.Unstructured)
		g.Expect(unstructured.SetNestedField(plain.Object, "done", "status", "state")).To(Succeed())
		g.Expect(k8s.Status().Update(ctx(), plain)).To(Succeed())
	})
	return time.Since(start), creates
}

// plainNamespace installs the plain CRD and makes a namespace of its own for
// a phase of the burst, deleted when the benchmark ends.
func plainNamespace(b *testing.B, g Gomega, prefix string) string {
	installFloorCRD(g)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())}}
	g.Expect(k8s.Create(ctx(), ns)).To(Succeed())
	b.Cleanup(func() { _ = k8s.Delete(ctx(), ns) })
	return ns.Name
}

// newPlain is the i-th plain object of namespace ns.
func newPlain(ns string, i int) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"value": "x"}}}
	o.SetGroupVersionKind(floorGVK)
	o.SetNamespace(ns)
	o.SetName(fmt.Sprintf("o-%05d", i))
	return o
}

func installFloorCRD(g Gomega) {
	crd := fromYAML(g, `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: plains.bench.visio.dev
spec:
  group: bench.visio.dev
  scope: Namespaced
  names: {plural: plains, singular: plain, kind: Plain, listKind: PlainList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {value: {type: string}}}
          status: {type: object, properties: {state: {type: string}}}
`)
	if err := k8s.Create(ctx(), crd); err != nil && !strings.Contains(err.Error(), "already exists") {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Eventually(func(g Gomega) {
		o := &unstructured.UnstructuredList{}
		o.SetGroupVersionKind(floorGVK.GroupVersion().WithKind("PlainList"))
		g.Expect(k8s.List(ctx(), o)).To(Succeed())
	}).WithTimeout(time.Minute).Should(Succeed())
}

// histogram is a Prometheus histogram read from the API server's metrics:
// cumulative counts by upper bound.
type histogram struct {
	bounds []float64
	counts []float64
	count  float64
	sum    float64
}

// mean is the exact mean, from the sum of the observations.
func (h histogram) mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / h.count
}

const admissionMetric = "apiserver_admission_webhook_admission_duration_seconds"

// handlerHistogram reads the time the manager's webhook server spent on the
// PlatformUser webhook (controller-runtime's histogram, in this process).
// Against admissionHistogram it tells the time in the operator from the time
// in the API server and on the way. Its buckets are decades, so only its
// mean is worth printing.
func handlerHistogram(g Gomega) histogram {
	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	var h histogram
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_latency_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == "webhook" && strings.HasSuffix(l.GetValue(), "-platformuser")
			}) {
				continue
			}
			for _, b := range m.GetHistogram().GetBucket() {
				h.bounds = append(h.bounds, b.GetUpperBound())
				h.counts = append(h.counts, float64(b.GetCumulativeCount()))
			}
			h.bounds = append(h.bounds, math.Inf(1))
			h.counts = append(h.counts, float64(m.GetHistogram().GetSampleCount()))
			h.count = float64(m.GetHistogram().GetSampleCount())
			h.sum = m.GetHistogram().GetSampleSum()
		}
	}
	return h
}

// admissionHistogram reads the latency of the PlatformUser webhook, summed
// over operations and verdicts, from the API server's /metrics.
func admissionHistogram(g Gomega) histogram {
	return admissionHistogramOf(g, "vplatformuser.tenancy.visio.dev")
}

// admissionHistogramOf is admissionHistogram for the webhook named name.
func admissionHistogramOf(g Gomega, name string) histogram {
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx())
	g.Expect(err).NotTo(HaveOccurred())
	byBound := map[float64]float64{}
	var h histogram
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, admissionMetric+"_") || !strings.Contains(line, `name="`+name+`"`) {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		g.Expect(err).NotTo(HaveOccurred())
		switch {
		case strings.HasPrefix(line, admissionMetric+"_bucket{"):
			i := strings.Index(line, `le="`)
			le := line[i+4:]
			le = le[:strings.IndexByte(le, '"')]
			bound := math.Inf(1)
			if le != "+Inf" {
				bound, err = strconv.ParseFloat(le, 64)
				g.Expect(err).NotTo(HaveOccurred())
			}
			byBound[bound] += v
		case strings.HasPrefix(line, admissionMetric+"_count{"):
			h.count += v
		case strings.HasPrefix(line, admissionMetric+"_sum{"):
			h.sum += v
		}
	}
	for bound := range byBound {
		h.bounds = append(h.bounds, bound)
	}
	sort.Float64s(h.bounds)
	for _, bound := range h.bounds {
		h.counts = append(h.counts, byBound[bound])
	}
	return h
}

// minus is the histogram of the observations made since before.
func (h histogram) minus(before histogram) histogram {
	out := histogram{bounds: h.bounds, count: h.count - before.count, sum: h.sum - before.sum}
	for i, bound := range h.bounds {
		c := h.counts[i]
		for j, b := range before.bounds {
			if b == bound {
				c -= before.counts[j]
			}
		}
		out.counts = append(out.counts, c)
	}
	return out
}

// quantile interpolates linearly within the bucket that holds q, as
// Prometheus's histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 || len(h.bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, bound := range h.bounds {
		if h.counts[i] >= rank {
			if math.IsInf(bound, 1) {
				return lower
			}
			return lower + (bound-lower)*(rank-below)/(h.counts[i]-below)
		}
		lower, below = bound, h.counts[i]
	}
	return lower
}

// controlPlaneUsage is the CPU time used by the kube-apiserver and etcd, from
// their own metrics (process_cpu_seconds_total), and the requests the API
// server has served by verb and resource (apiserver_request_total).
type controlPlaneUsage struct {
	apiserver, etcd float64
	requests        map[string]float64
}

func (c controlPlaneUsage) minus(o controlPlaneUsage) controlPlaneUsage {
	requests := map[string]float64{}
	for k, v := range c.requests {
		if d := v - o.requests[k]; d > 0 {
			requests[k] = d
		}
	}
	return controlPlaneUsage{c.apiserver - o.apiserver, c.etcd - o.etcd, requests}
}

// topRequests lists the n kinds of request served most, per user, largest
// first.
func (c controlPlaneUsage) topRequests(n, users int) string {
	keys := slices.Collect(maps.Keys(c.requests))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(c.requests[b], c.requests[a]) })
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%s %.3f", k, c.requests[k]/float64(users)))
	}
	return strings.Join(out, ", ")
}

// controlPlaneCPU reads the CPU time the control plane has used so far.
func readControlPlane(g Gomega) controlPlaneUsage {
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx())
	g.Expect(err).NotTo(HaveOccurred())
	etcdURL := *testEnv.ControlPlane.Etcd.URL
	etcdURL.Path = "/metrics"
	resp, err := http.Get(etcdURL.String())
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	cpuOf := func(families []*dto.MetricFamily) float64 {
		return sampleIn(families, "process_cpu_seconds_total", nil)
	}
	apiserver, err := parseMetrics(bytes.NewReader(raw))
	g.Expect(err).NotTo(HaveOccurred())
	etcd, err := parseMetrics(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return controlPlaneUsage{apiserver: cpuOf(apiserver), etcd: cpuOf(etcd), requests: requestCounts(apiserver)}
}

// requestCounts sums apiserver_request_total by verb and resource (with its
// subresource), over codes and scopes.
func requestCounts(families []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "apiserver_request_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key := labels["verb"] + " " + labels["resource"]
			if labels["subresource"] != "" {
				key += "/" + labels["subresource"]
			}
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out
}
