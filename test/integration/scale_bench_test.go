package integration

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// BenchmarkScaleMemory settles 10,000 users in 100 pools and 1,000 rooms,
// then reports the memory of the process that runs the manager (heap after a
// collection, and RSS) and the cost of one full resync: a new manager whose
// fresh cache reconciles every object again.
//
//	make bench-scale
//
// The manager runs inside the test process, so the figures include the test's
// own client (no cache); they are an upper bound of the manager's.
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
		b.Logf("settled %d users, %d pools, %d rooms: heap %.1f MiB, RSS %.1f MiB", pools*usersPerPool, pools, rooms, mib(heap), mib(rss))
		b.ReportMetric(mib(heap), "heap-MiB")
		b.ReportMetric(mib(rss), "rss-MiB")

		// One full resync: a new manager, a fresh cache, every object reconciled.
		stopSharedManager()
		resync := &writeCounter{}
		reconcilesBefore, timesBefore := reconciles(), reconcileTimes()
		cpuBefore := cpuTime()
		start := time.Now()
		opts := testOptions()
		noDrift(&opts)
		stopShared = startManager(resync, opts)
		synced := time.Since(start)
		// Done when the reconcile count stops moving.
		last, stable := reconciles(), 0
		for stable < 4 {
			time.Sleep(500 * time.Millisecond)
			if n := reconciles(); n == last {
				stable++
			} else {
				last, stable = n, 0
			}
		}
		took := time.Since(start) - 2*time.Second
		cpu := cpuTime() - cpuBefore
		heap, rss = memory()
		b.Logf("one full resync: cache synced in %.1fs, %d reconciles in %.1fs, %.1f CPU seconds, %d reads, %d writes; heap %.1f MiB, RSS %.1f MiB after",
			synced.Seconds(), int64(last-reconcilesBefore), took.Seconds(), cpu.Seconds(), resync.reads.Load(), resync.writes.Load(), mib(heap), mib(rss))
		b.Logf("resync reconciles by controller (count, time spent): %s", reconcileBreakdown(timesBefore))
		b.ReportMetric(took.Seconds(), "s-resync")
		b.ReportMetric(cpu.Seconds(), "cpu-s-resync")
		b.ReportMetric(float64(resync.writes.Load()), "resync-writes")
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

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reconciles is the total of controller-runtime's reconcile counter, over
// every controller.
func reconciles() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			total += counterValue(m)
		}
	}
	return total
}

// reconcileTimes is, per controller, how many reconciles ran and the time
// they took in all (controller-runtime's histogram): where a resync goes.
func reconcileTimes() map[string][2]float64 {
	out := map[string][2]float64{}
	families, err := ctrlmetrics.Registry.Gather()
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
func reconcileBreakdown(before map[string][2]float64) string {
	var parts []string
	for name, now := range reconcileTimes() {
		if n := now[0] - before[name][0]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d in %.1fs", name, int64(n), now[1]-before[name][1]))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}
