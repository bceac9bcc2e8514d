package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// Shape of the burst: 20 pools of one entity, 100 users each. The first ten
// pools are Deny pools with room for everyone (every create goes through the
// admission reservation); the last ten are Queue pools of 90, so 10 users of
// each wait.
const (
	burstPools        = 20
	burstUsersPerPool = 100
	burstClients      = 64
	burstQueueSize    = 90
)

// BenchmarkUserBurst creates 2,000 users at once across 20 pools and reports
// how long the operator takes to settle them and how many writes it makes:
//
//	make bench-burst
//
// ns/op is the time from the first create to the moment every pool and every
// user shows its final status. The write counts are the stable figures; the
// target is about one status write per user.
func BenchmarkUserBurst(b *testing.B) {
	counter := &writeCounter{}
	withManager(b, counter, func(*operator.Options) {})
	users := int64(burstPools * burstUsersPerPool)
	var settle, create time.Duration
	writes := map[string]int64{}
	for range b.N {
		b.StopTimer()
		g := NewWithT(b)
		_, ns := newEntity(b, g)
		for p := range burstPools {
			if p < burstPools/2 {
				newPool(g, ns, fmt.Sprintf("pool-%02d", p), burstUsersPerPool, v1.EnforcementDeny)
			} else {
				newPool(g, ns, fmt.Sprintf("pool-%02d", p), burstQueueSize, v1.EnforcementQueue)
			}
		}
		before := counter.snapshot()
		b.StartTimer()
		start := time.Now()
		createBurst(g, ns)
		create += time.Since(start)
		waitBurstSettled(g, ns)
		settle += time.Since(start)
		b.StopTimer()
		for k, v := range counter.snapshot() {
			writes[k] += v - before[k]
		}
	}
	n := float64(b.N)
	b.ReportMetric(settle.Seconds()/n, "s-to-settle")
	b.ReportMetric(create.Seconds()/n, "s-to-create")
	b.ReportMetric(float64(writes["platformusers/status"])/n/float64(users), "user-status-writes/user")
	b.ReportMetric(float64(writes["licensepools/status"])/n/burstPools, "pool-status-writes/pool")
	b.ReportMetric(float64(writes["events"])/n, "events")
	b.ReportMetric(float64(writes[allWrites])/n/float64(users), "manager-writes/user")
}

// createBurst creates the users from burstClients concurrent clients.
func createBurst(g Gomega, ns string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, burstClients)
	for p := range burstPools {
		for i := range burstUsersPerPool {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				u := newUser(ns, fmt.Sprintf("p%02d-u%03d", p, i), true)
				u.Spec.LicensePool = fmt.Sprintf("pool-%02d", p)
				g.Expect(k8s.Create(ctx(), u)).To(Succeed())
			}()
		}
	}
	wg.Wait()
}

// waitBurstSettled waits until every pool reports its final counts and every
// user its final Licensed condition for its current generation.
func waitBurstSettled(g Gomega, ns string) {
	g.Eventually(func(g Gomega) {
		pools := &v1.LicensePoolList{}
		g.Expect(k8s.List(ctx(), pools, client.InNamespace(ns))).To(Succeed())
		for _, p := range pools.Items {
			want := min(int32(burstUsersPerPool), *p.Spec.Licenses)
			g.Expect(p.Status.Used).To(Equal(want), "pool %s used", p.Name)
			g.Expect(p.Status.Pending).To(Equal(int32(burstUsersPerPool)-want), "pool %s pending", p.Name)
		}
		list := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(burstPools * burstUsersPerPool))
		for i := range list.Items {
			u := &list.Items[i]
			g.Expect(u.Status.ObservedGeneration).To(Equal(u.Generation), "user %s", u.Name)
			g.Expect(meta.FindStatusCondition(u.Status.Conditions, v1.LicensedCondition)).NotTo(BeNil(), "user %s", u.Name)
		}
	}).WithTimeout(10 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
}
