package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// BenchmarkScaleMemory settles 10,000 users in 100 pools and 1,000 rooms
// with the manager inside the test process, then stops it and runs the
// manager binary as a process of its own: its fresh cache reconciles every
// object again (one full resync), and once that has settled its memory (heap
// in use and RSS, from its own metrics) is the manager's at that scale.
//
//	make bench-scale
//
// The test process's memory, manager included, is logged too, for
// comparison with earlier runs.
func BenchmarkScaleMemory(b *testing.B) {
	const pools, usersPerPool, rooms = 100, 100, 1000
	counter := &writeCounter{}
	// No drift check within the run: at 1,000 rooms one a minute is 17
	// reconciles a second, which would hide the end of the resync (and
	// belongs to bench-vmr's figures, not to this one).
	noDrift := func(o *operator.Options) { o.DriftCheckInterval = time.Hour }
	withManager(b, counter, noDrift)
	g := NewWithT(b)
	b.StopTimer()
	for range b.N {
		_, ns := newEntity(b, g)
		for p := range pools {
			newPool(g, ns, fmt.Sprintf("pool-%03d", p), usersPerPool, v1.EnforcementQueue)
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, burstClients)
		for i := range pools * usersPerPool {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				u := newUser(ns, fmt.Sprintf("u-%05d", i), true)
				u.Spec.LicensePool = fmt.Sprintf("pool-%03d", i%pools)
				g.Expect(k8s.Create(ctx(), u)).To(Succeed())
			}()
		}
		for i := range rooms {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				v := newVMR(ns, fmt.Sprintf("room-%04d", i), func(v *v1.VMR) {
					v.Spec.Aliases = []string{fmt.Sprintf("room-%04d@%s.example", i, ns)}
				})
				g.Expect(k8s.Create(ctx(), v)).To(Succeed())
			}()
		}
		wg.Wait()
		g.Eventually(func(g Gomega) {
			users := &v1.PlatformUserList{}
			g.Expect(k8s.List(ctx(), users, client.InNamespace(ns))).To(Succeed())
			for i := range users.Items {
				g.Expect(users.Items[i].Status.ObservedGeneration).To(Equal(users.Items[i].Generation))
			}
		}).WithTimeout(30 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		waitAllReady(g, ns, rooms, 30*time.Minute)
		time.Sleep(5 * time.Second) // the last passes and the entity rollup
		heap, rss := memory()
		b.Logf("test process, manager included: heap %.1f MiB, RSS %.1f MiB", mib(heap), mib(rss))

		// One full resync by the manager as a process of its own: a fresh
		// cache, every object reconciled again. Its memory once settled is
		// the manager's at this scale, apart from the test's.
		bin := buildManager(b)
		stopSharedManager()
		start := time.Now()
		p := startManagerProcess(b, bin, "--drift-check-interval=1h")
		m := p.gatherer()
		g.Eventually(p.ready).WithTimeout(10*time.Minute).WithPolling(100*time.Millisecond).Should(BeTrue(), "the manager process's caches sync")
		synced := time.Since(start)
		// Done when the reconcile count has moved, then not for two seconds.
		last, stable := reconciles(m), 0
		for stable < 4 || last == 0 {
			time.Sleep(500 * time.Millisecond)
			if n := reconciles(m); n == last {
				stable++
			} else {
				last, stable = n, 0
			}
		}
		took := time.Since(start) - 2*time.Second
		cpu := sample(m, "process_cpu_seconds_total", nil)
		writes := writeRequests(m)
		inUse := sample(m, "go_memstats_heap_inuse_bytes", nil)
		// Collect the garbage of the resync, as the bench does for the test
		// process, and keep the profile for go tool pprof.
		profile := filepath.Join(os.TempDir(), "visio-operator-bench-scale-heap.pprof")
		g.Expect(p.heapProfile(profile)).To(Succeed())
		heap, rss = uint64(sample(m, "go_memstats_heap_alloc_bytes", nil)), uint64(sample(m, "process_resident_memory_bytes", nil))
		b.Logf("one full resync by the manager process: ready (caches synced) after %.1fs, %d reconciles done %.1fs after start, %.1f CPU seconds, %.0f writes",
			synced.Seconds(), int64(last), took.Seconds(), cpu, writes)
		b.Logf("resync reconciles by controller (count, time spent): %s", reconcileBreakdown(m, nil))
		b.Logf("manager process settled with %d users, %d pools, %d rooms: heap in use %.1f MiB before a collection; after it, heap %.1f MiB, RSS %.1f MiB (profile: go tool pprof -top %s)",
			pools*usersPerPool, pools, rooms, mib(uint64(inUse)), mib(heap), mib(rss), profile)
		// The runtime gives the pages the resync freed back to the system in
		// the background, over a minute or so: what a dashboard shows of an
		// idle manager is this later figure.
		time.Sleep(time.Minute)
		idleRSS := sample(m, "process_resident_memory_bytes", nil)
		b.Logf("a minute later, idle: RSS %.1f MiB, heap %.1f MiB",
			mib(uint64(idleRSS)), mib(uint64(sample(m, "go_memstats_heap_alloc_bytes", nil))))
		b.ReportMetric(mib(heap), "heap-MiB")
		b.ReportMetric(mib(rss), "rss-MiB")
		b.ReportMetric(mib(uint64(idleRSS)), "idle-rss-MiB")
		b.ReportMetric(took.Seconds(), "s-resync")
		b.ReportMetric(cpu, "cpu-s-resync")
		b.ReportMetric(writes, "resync-writes")
		p.stop()
		stopShared = startManager(counter, testOptions())
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// memory returns the live heap after a collection and the process's RSS.
func memory() (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				rss = kb * 1024
			}
		}
	}
	return m.HeapAlloc, rss
}

// reconciles is the total of controller-runtime's reconcile counter, over
// every controller.
func reconciles(g prometheus.Gatherer) float64 {
	return sample(g, "controller_runtime_reconcile_total", nil)
}

// reconcileTimes is, per controller, how many reconciles ran and the time
// they took in all (controller-runtime's histogram): where a resync goes.
func reconcileTimes(g prometheus.Gatherer) map[string][2]float64 {
	out := map[string][2]float64{}
	families, err := g.Gather()
	if err != nil {
		return out
	}
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_time_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" {
					h := m.GetHistogram()
					out[l.GetValue()] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
				}
			}
		}
	}
	return out
}

// reconcileBreakdown prints what reconcileTimes says happened since before.
func reconcileBreakdown(g prometheus.Gatherer, before map[string][2]float64) string {
	var parts []string
	for name, now := range reconcileTimes(g) {
		if n := now[0] - before[name][0]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d in %.1fs", name, int64(n), now[1]-before[name][1]))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
