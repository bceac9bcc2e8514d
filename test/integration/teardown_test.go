package integration

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// TestQuietTeardown (guarantee 6): deleting an Entity deletes its namespace,
// and with it every pool, request and user at once. Nothing of that namespace is read
// again, so the operator writes none of its statuses on the way out: one
// write per user, as each pool disappears before its users, is a storm of
// thousands after a large entity is deleted.
func TestQuietTeardown(t *testing.T) {
	g := NewWithT(t)
	// A Deny pool of 100 with an approved request for 50 more (its finalizer
	// must not keep the namespace), and a Queue pool of 90 with 10 waiting.
	f := newRequestFixture(t, g, 100, v1.EnforcementDeny)
	ns := f.ns
	f.ask(g, "more", 50, 0)
	g.Expect(decide(f.concierge, ns, "more", v1.DecisionApproved, f.deciderID, time.Now())).To(Succeed())
	poolCounts(g, ns, 150, 0)
	newPool(g, ns, "queue", 90, v1.EnforcementQueue)
	for i := range 150 {
		for _, pool := range []string{v1.DefaultLicensePool, "queue"} {
			if pool == "queue" && i >= 100 {
				continue
			}
			u := newUser(ns, fmt.Sprintf("%s-%03d", pool, i), true)
			u.Spec.LicensePool = pool
			g.Expect(k8s.Create(ctx(), u)).To(Succeed())
		}
	}
	// settle counts the waiting users of the whole namespace: the queue's.
	settle(g, ns, "queue", 90, 10)
	g.Eventually(func(g Gomega) {
		p := &v1.LicensePool{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: v1.DefaultLicensePool}, p)).To(Succeed())
		g.Expect(p.Status.Used).To(Equal(int32(150)))
	}).WithTimeout(time.Minute).Should(Succeed())
	entity := &v1.Entity{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: f.entity}, entity)).To(Succeed())

	before := groupWrites(g)
	deleteEntityAndWait(g, entity)
	writes := writesSince(groupWrites(g), before)
	t.Logf("writes to %s while the entity and its namespace went away: %s", v1.GroupVersion.Group, formatWrites(writes))
	for _, status := range []string{"platformusers/status", "licensepools/status"} {
		for k, n := range writes {
			g.Expect(k).NotTo(HavePrefix("PATCH "+status), "%s writes during teardown: %.0f", status, n)
			g.Expect(k).NotTo(HavePrefix("PUT "+status), "%s writes during teardown: %.0f", status, n)
		}
	}
}
