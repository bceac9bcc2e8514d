package integration

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// quietWindow is how long each window of the quiet check lasts.
const quietWindow = 10 * time.Second

// TestQuietAfterBurst (guarantee 6): once a burst has settled, into a Deny
// pool (100 users for 20 licenses) and a Queue pool (40 users for 30), the
// manager writes nothing: in windows of 10 s past the reservations' TTL, and
// again after a restart, whose resync reconciles every object.
func TestQuietAfterBurst(t *testing.T) {
	g := NewWithT(t)
	waitNoEntityDeleting(g)
	counter := &writeCounter{}
	const ttl = 5 * time.Second
	restart := withManager(t, counter, func(o *operator.Options) { o.ReservationTTL = ttl })
	_, ns := newEntity(t, g)
	_, queued := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, 20, v1.EnforcementDeny)
	newPool(g, queued, v1.DefaultLicensePool, 30, v1.EnforcementQueue)
	freshDeny, freshQueue := watchFreshness(t, g, ns), watchFreshness(t, g, queued)
	g.Expect(burst(g, ns, 100, nil)).To(Equal(20))
	g.Expect(burst(g, queued, 40, nil)).To(Equal(40))
	settleBoth := func() {
		settle(g, ns, v1.DefaultLicensePool, 20, 0)
		settle(g, queued, v1.DefaultLicensePool, 30, 10)
	}
	settleBoth()
	// Pool status freshness: the pool write after its users' last write
	// agrees with them (a full pool never reads as empty past it).
	for _, f := range []*poolFreshness{freshDeny, freshQueue} {
		r := f.report()
		t.Logf("pool freshness: %s", r)
		g.Expect(r.WatchErrors).To(BeEmpty())
		g.Expect(r.Disagreeing).To(BeEmpty(), "pools whose counts disagree with their users once settled")
		g.Expect(r.StaleAfterSettle).To(BeZero(), "pool writes older than the users' last write")
	}

	quiet := func(phase string, windows int) {
		for w := range windows {
			before := counter.snapshot()
			time.Sleep(quietWindow)
			after := counter.snapshot()
			delta := map[string]int64{}
			for k, v := range after {
				if d := v - before[k]; d != 0 {
					delta[k] = d
				}
			}
			t.Logf("%s, window %d (%s): manager writes %v", phase, w+1, quietWindow, delta)
			g.Expect(delta).To(BeEmpty(), "%s: the manager wrote in window %d", phase, w+1)
		}
	}
	// The first window starts once the reservations made in the burst have
	// outlived their TTL; the check covers that expiry.
	time.Sleep(ttl)
	quiet("after settle", 2)

	restart()
	settleBoth()
	quiet("after a restart and its full resync", 2)
}
