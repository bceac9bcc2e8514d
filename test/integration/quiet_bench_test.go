package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// The quiet harness's bursts: pools of 100 users in one entity, half Deny
// with 80 licenses (20 of each refused at admission), half Queue with 90
// (10 of each waiting).
const (
	quietUsersPerPool = 100
	quietDenyLicenses = 80
	quietQueueLicense = 90
)

// quietEnv reads a positive integer setting of the harness.
func quietEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkQuietAfterBurst is the storm harness of guarantee 6:
//
//	make bench-quiet                    # 2,000 users
//	make bench-quiet QUIET_USERS=10000  # 10,000 users
//
// For a burst into Deny and Queue pools, run once straight and once with the
// manager restarted halfway through the creates, it counts every write to
// the operator's API group on the API server (by verb, resource and code,
// so a 409 shows) in windows of 10 s for QUIET_WINDOWS windows (default 30:
// five minutes) after the burst settled, then restarts the manager (a full
// resync: every object listed and reconciled again) and counts as many
// windows again. Every window must be empty. It also replays a watch of the
// pools and users and reports how far, and how long, pool counts strayed
// from the users (see poolFreshness).
func BenchmarkQuietAfterBurst(b *testing.B) {
	users := quietEnv("QUIET_USERS", 2000)
	windows := quietEnv("QUIET_WINDOWS", 30)
	for _, midRestart := range []bool{false, true} {
		name := fmt.Sprintf("%d-users-straight", users)
		if midRestart {
			name = fmt.Sprintf("%d-users-restarted-midway", users)
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				quietAfterBurst(b, users, windows, midRestart)
			}
		})
	}
}

func quietAfterBurst(b *testing.B, users, windows int, midRestart bool) {
	g := NewWithT(b)
	restart := withManager(b, nil, func(*operator.Options) {})
	entity, ns := newEntity(b, g)
	// The next run's windows must not count this entity's teardown.
	b.Cleanup(func() { deleteEntityAndWait(g, entity) })
	pools := max(users/quietUsersPerPool, 2)
	for p := range pools {
		if p%2 == 0 {
			newPool(g, ns, quietPoolName(p), quietDenyLicenses, v1.EnforcementDeny)
		} else {
			newPool(g, ns, quietPoolName(p), quietQueueLicense, v1.EnforcementQueue)
		}
	}
	fresh := watchFreshness(b, g, ns)
	start := time.Now()
	admitted := quietBurst(g, ns, pools, midRestart, restart)
	settleQuietBurst(g, ns, pools, admitted)
	b.Logf("%d users into %d pools (restart halfway: %t): settled in %.1fs", pools*quietUsersPerPool, pools, midRestart, time.Since(start).Seconds())
	report := fresh.report()
	b.Logf("pool freshness: %s", report)
	g.Expect(report.Disagreeing).To(BeEmpty(), "pools whose counts disagree with their users once settled")
	g.Expect(report.StaleAfterSettle).To(BeZero(), "a pool wrote counts older than its users after their last write")
	g.Expect(report.WatchErrors).To(BeEmpty())
	explain := func(since time.Time) {
		for _, c := range fresh.changesSince(since, 20) {
			b.Logf("  %s", c)
		}
	}

	check := func(phase string) {
		got := quietWindows(g, b.Logf, phase, windows, quietWindow, explain)
		total := 0.0
		for _, w := range got {
			for _, n := range w {
				total += n
			}
		}
		b.ReportMetric(total, "writes-"+phase)
		counts := make([]string, len(got))
		for i, w := range got {
			n := 0.0
			for _, v := range w {
				n += v
			}
			counts[i] = strconv.FormatFloat(n, 'f', 0, 64)
		}
		b.Logf("%s: writes per %s window, %d windows: %s", phase, quietWindow, len(got), strings.Join(counts, " "))
		for i, w := range got {
			g.Expect(w).To(BeEmpty(), "%s: writes in window %d", phase, i+1)
		}
	}
	check("after-settle")
	restart()
	settleQuietBurst(g, ns, pools, admitted)
	check("after-resync")
	b.ReportMetric(float64(report.Largest), "largest-disagreement-users")
	b.ReportMetric(report.LargestLasted.Seconds()*1000, "largest-disagreement-ms")
	b.ReportMetric(report.SettleLag.Seconds()*1000, "settle-lag-ms")
}

func quietPoolName(p int) string { return fmt.Sprintf("pool-%03d", p) }

// quietBurst creates quietUsersPerPool users per pool from burstClients
// clients and returns how many each pool admitted. With midRestart the
// manager is restarted once half the creates were sent; creates refused
// meanwhile (the webhook does not answer) are retried, as kubectl users and
// GitOps controllers retry them.
func quietBurst(g Gomega, ns string, pools int, midRestart bool, restart func()) []int32 {
	admitted := make([]atomic.Int32, pools)
	n := pools * quietUsersPerPool
	var wg sync.WaitGroup
	sem := make(chan struct{}, burstClients)
	var restarting sync.WaitGroup
	for i := range n {
		if midRestart && i == n/2 {
			restarting.Add(1)
			go func() { defer restarting.Done(); restart() }()
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p := i / quietUsersPerPool
			u := newUser(ns, fmt.Sprintf("p%03d-u%03d", p, i%quietUsersPerPool), true)
			u.Spec.LicensePool = quietPoolName(p)
			for attempt := 0; ; attempt++ {
				err := k8s.Create(ctx(), u.DeepCopy())
				switch {
				case err == nil, apierrors.IsAlreadyExists(err):
					admitted[p].Add(1)
					return
				case p%2 == 0 && apierrors.IsInvalid(err) && strings.Contains(err.Error(), "is full"):
					return // refused: the Deny pool is full
				case attempt < 300 && (apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
					apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err)):
					time.Sleep(200 * time.Millisecond)
				default:
					g.Expect(err).NotTo(HaveOccurred(), "create %s", u.Name)
					return
				}
			}
		}()
	}
	wg.Wait()
	restarting.Wait()
	out := make([]int32, pools)
	for p := range out {
		out[p] = admitted[p].Load()
	}
	return out
}

// settleQuietBurst waits until every pool shows its final counts and every
// user its Licensed condition for its generation.
func settleQuietBurst(g Gomega, ns string, pools int, admitted []int32) {
	g.Eventually(func(g Gomega) {
		list := &v1.LicensePoolList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(pools))
		total := int32(0)
		for _, p := range list.Items {
			var i int
			_, err := fmt.Sscanf(p.Name, "pool-%03d", &i)
			g.Expect(err).NotTo(HaveOccurred())
			want := min(admitted[i], *p.Spec.Licenses)
			g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation), "pool %s", p.Name)
			g.Expect(p.Status.Used).To(Equal(want), "pool %s used", p.Name)
			g.Expect(p.Status.Pending).To(Equal(admitted[i]-want), "pool %s pending", p.Name)
			g.Expect(p.Status.Reservations).To(BeEmpty(), "pool %s reservations", p.Name)
			total += admitted[i]
		}
		users := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), users, client.InNamespace(ns))).To(Succeed())
		g.Expect(users.Items).To(HaveLen(int(total)))
		for i := range users.Items {
			u := &users.Items[i]
			c := meta.FindStatusCondition(u.Status.Conditions, v1.LicensedCondition)
			g.Expect(c).NotTo(BeNil(), "user %s", u.Name)
			g.Expect(c.ObservedGeneration).To(Equal(u.Generation), "user %s", u.Name)
		}
	}).WithTimeout(30 * time.Minute).WithPolling(time.Second).Should(Succeed())
}

// deleteEntityAndWait deletes an entity and waits until its namespace is
// gone, so that its teardown's writes are over.
func deleteEntityAndWait(g Gomega, e *v1.Entity) {
	g.Expect(client.IgnoreNotFound(k8s.Delete(ctx(), e))).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: e.NamespaceName()}, &corev1.Namespace{}))
	}).WithTimeout(10*time.Minute).WithPolling(time.Second).Should(BeTrue(), "namespace %s never went away", e.NamespaceName())
}
