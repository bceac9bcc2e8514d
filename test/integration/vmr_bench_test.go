package integration

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/pexip"
	"visio.dev/operator/internal/backend/pexip/pexiptest"
	"visio.dev/operator/internal/operator"
)

// TestVMRBenchmark creates many VMRs at once against the Pexip test server
// and reports how long they take to be Ready, how many backend requests each
// one costs, and what steady state costs per drift interval. It runs only
// with VISIO_BENCH=1 (VISIO_BENCH_ROOMS and VISIO_BENCH_DRIFT change the
// defaults of 500 rooms and a 30s drift interval):
//
//	VISIO_BENCH=1 KUBEBUILDER_ASSETS=$(hack/controlplane.sh) \
//	  go test ./test/integration/ -count=1 -run TestVMRBenchmark -v -timeout 30m
//
// Durations are reported, never asserted; request counts are asserted.
func TestVMRBenchmark(t *testing.T) {
	if os.Getenv("VISIO_BENCH") == "" {
		t.Skip("set VISIO_BENCH=1 to run the VMR benchmark")
	}
	n := envInt(t, "VISIO_BENCH_ROOMS", 500)
	drift := 30 * time.Second
	if v := os.Getenv("VISIO_BENCH_DRIFT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("VISIO_BENCH_DRIFT: %v", err)
		}
		drift = d
	}
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	bed := startPexip(t, g, nil, func(o *operator.Options) { o.DriftCheckInterval = drift })
	bed.srv.ResetRequests()
	k8sBefore := bed.counter.snapshot()

	// Create every room at once, from as many clients as a GitOps apply uses.
	start := time.Now()
	vmrs := make([]*v1.VMR, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				vmrs[i] = newVMR(ns, fmt.Sprintf("room-%04d", i), func(v *v1.VMR) {
					v.Spec.Aliases = []string{fmt.Sprintf("room-%04d@%s.example", i, ns)}
				})
				g.Expect(k8s.Create(ctx(), vmrs[i])).To(Succeed())
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	admitted := time.Since(start)
	ready := waitAllReady(g, ns, n, 15*time.Minute)
	allReady := time.Since(start)
	create := bed.srv.Operations()
	k8sCreate := diffCounts(k8sBefore, bed.counter.snapshot())

	for _, v := range vmrs {
		got := &v1.VMR{}
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(v), got)).To(Succeed())
		bed.expectRoom(g, got)
	}
	g.Expect(bed.ourRooms()).To(HaveLen(n))

	// Steady state over whole drift intervals.
	const intervals = 2
	bed.srv.ResetRequests()
	k8sBefore = bed.counter.snapshot()
	time.Sleep(intervals * drift)
	steady := bed.srv.Operations()
	k8sSteady := diffCounts(k8sBefore, bed.counter.snapshot())

	start = time.Now()
	for _, v := range vmrs {
		g.Expect(k8s.Delete(ctx(), v)).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		list := &v1.VMRList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(BeEmpty())
	}).WithTimeout(15 * time.Minute).WithPolling(time.Second).Should(Succeed())
	deleted := time.Since(start)
	g.Expect(bed.ourRooms()).To(BeEmpty())

	t.Logf("%d VMRs: admitted in %s, all Ready after %s (half after %s), all deleted %s later",
		n, admitted.Round(time.Millisecond), allReady.Round(time.Millisecond), ready[n/2].Round(time.Millisecond), deleted.Round(time.Millisecond))
	t.Logf("backend requests to provision, per VMR: %s", perRoom(create, n))
	t.Logf("manager's Kubernetes writes to provision, per VMR: %s", perRoom(k8sCreate, n))
	t.Logf("steady state over %d drift intervals of %s, per VMR per interval: backend %s; Kubernetes writes %s",
		intervals, drift, perRoom(scale(steady, intervals), n), perRoom(scale(k8sSteady, intervals), n))
	// Drift checks and sweeps fall due while the burst settles: they are
	// counted apart from what creating a room costs.
	checks := int(allReady/drift) + 1
	perCreate := create["list conference"] + create["create conference"] - min(create["list conference"]-n, checks*((n+99)/100))
	t.Logf("backend requests per VMR created: %.2f (one lookup by key, one create carrying its dial strings; goal <= 4); "+
		"per drift check: %.2f reads, 0 writes", float64(perCreate)/float64(n), float64(steady["get conference"])/float64(n*intervals))
	t.Logf("sweep per drift interval at %d rooms (tag__startswith refused, listed by service type): %.1f listing requests",
		n, float64(steady["list conference"])/float64(intervals))

	// What a room costs is counted exactly: one lookup by key and one create
	// carrying its three dial strings (numeric id, SIP alias, alias); nothing
	// else but the drift checks and sweeps due meanwhile. In steady state: no
	// write, at most one read per room per interval (plus one for a check
	// under way when the window opens), and the sweep's one paged listing by
	// tag per interval.
	g.Expect(create["create conference"]).To(Equal(n))
	g.Expect(create["list conference"]).To(BeNumerically(">=", n))
	g.Expect(create["list conference"]-n).To(BeNumerically("<=", checks*((n+99)/100)), "listings beyond one per room and the sweeps")
	g.Expect(create["get conference"]).To(BeNumerically("<=", n*checks), "reads beyond the drift checks")
	for op := range create {
		g.Expect(op).To(BeElementOf("list conference", "create conference", "get conference"))
	}
	for op, count := range steady {
		g.Expect(op).To(BeElementOf("get conference", "list conference"), "%d %q requests in steady state", count, op)
	}
	g.Expect(steady["get conference"]).To(BeNumerically("<=", n*(intervals+1)))
	g.Expect(steady["list conference"]).To(BeNumerically("<=", (intervals+1)*((n+99)/100)))
	sweepAt1000(t, g)
	// Writes of other controllers (an earlier test's entity going away) are
	// reported above, not counted here.
	for _, res := range roomResources {
		g.Expect(k8sSteady[res]).To(BeZero(), "Kubernetes writes to %s in steady state", res)
	}
}

// sweepAt1000 measures one sweep's listing at 1,000 rooms of ours among
// 1,000 of another installation and 100 made by hand: one paged list by tag
// prefix, no per-room call; where the node refuses the prefix, one paged
// list of every room by service type (after one refused request, once).
func sweepAt1000(t *testing.T, g Gomega) {
	for _, prefix := range []bool{true, false} {
		srv := pexiptest.NewServer(pexipUser, pexipPassword)
		srv.AllowTagPrefixFilter(prefix)
		var clients []*pexip.Client
		for _, owner := range []string{"paris", "lyon"} {
			c, err := pexip.New(pexip.Config{URL: srv.URL, Username: pexipUser, Password: pexipPassword, Owner: owner})
			g.Expect(err).NotTo(HaveOccurred())
			clients = append(clients, c)
		}
		for i := range 1000 {
			for j, c := range clients {
				id := strconv.Itoa(100000 + 1000*j + i)
				_, err := c.Create(ctx(), backend.Room{Key: fmt.Sprintf("visio-%04d", i), Name: "Room " + id, NumericID: id})
				g.Expect(err).NotTo(HaveOccurred())
			}
		}
		for i := range 100 {
			srv.CreateRoomByHand(fmt.Sprintf("hand %d", i))
		}
		want := map[string]int{"list conference": 10}
		if !prefix {
			_, err := clients[0].ListTagged(ctx(), "visio-") // learns that the prefix is refused
			g.Expect(err).NotTo(HaveOccurred())
			want = map[string]int{"list conference": 21}
		}
		srv.ResetRequests()
		start := time.Now()
		tagged, err := clients[0].ListTagged(ctx(), "visio-")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tagged).To(HaveLen(1000))
		ops := srv.Operations()
		t.Logf("sweep at 1,000 rooms of ours, 1,100 others (tag__startswith served: %v): %v in %s", prefix, ops, time.Since(start).Round(time.Millisecond))
		g.Expect(ops).To(Equal(want))
		srv.Close()
	}
}

// roomResources are what the VMR controller writes, besides Events (which
// other controllers write too, and which the VMR controller sends only with
// a backend or status change).
var roomResources = []string{"vmrs", "vmrs/status", "secrets", "dialstringclaims"}

// waitAllReady waits until n VMRs of ns are Ready and returns, in order, the
// time each one was first seen Ready.
func waitAllReady(g Gomega, ns string, n int, timeout time.Duration) []time.Duration {
	start := time.Now()
	seen := map[string]time.Duration{}
	g.Eventually(func(g Gomega) {
		list := &v1.VMRList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		for i := range list.Items {
			v := &list.Items[i]
			c := meta.FindStatusCondition(v.Status.Conditions, v1.ReadyCondition)
			if _, ok := seen[v.Name]; !ok && c != nil && c.Status == "True" && c.ObservedGeneration == v.Generation {
				seen[v.Name] = time.Since(start)
			}
		}
		g.Expect(len(seen)).To(Equal(n), "VMRs Ready")
	}).WithTimeout(timeout).WithPolling(500 * time.Millisecond).Should(Succeed())
	out := make([]time.Duration, 0, n)
	for _, d := range seen {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func diffCounts(before, after map[string]int64) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = int(d)
		}
	}
	return out
}

func scale(m map[string]int, by int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		out[k] = float64(v) / float64(by)
	}
	return out
}

// perRoom formats counts divided by the number of rooms, sorted by kind.
func perRoom[N int | float64](m map[string]N, n int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(m[k])/float64(n)))
	}
	return strings.Join(parts, ", ")
}
