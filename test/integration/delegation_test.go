package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// subtreeWatch follows every user of a set of namespaces through one watch
// and records the highest number it ever saw licensed at once, in any pool.
type subtreeWatch struct {
	max     atomic.Int64
	stop    func()
	stopped chan struct{}
}

func watchSubtree(t *testing.T, g Gomega, namespaces ...string) *subtreeWatch {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(ctx(), &v1.PlatformUserList{})
	g.Expect(err).NotTo(HaveOccurred())
	in := map[string]bool{}
	for _, ns := range namespaces {
		in[ns] = true
	}
	sw := &subtreeWatch{stop: w.Stop, stopped: make(chan struct{})}
	go func() {
		defer close(sw.stopped)
		held := map[string]bool{}
		n := 0
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*v1.PlatformUser)
			if !ok || !in[u.Namespace] {
				continue
			}
			key := u.Namespace + "/" + u.Name
			now := ev.Type != watch.Deleted && u.Status.LicensePool != "" &&
				meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)
			if now != held[key] {
				if now {
					n++
				} else {
					n--
				}
				held[key] = now
			}
			if int64(n) > sw.max.Load() {
				sw.max.Store(int64(n))
			}
		}
	}()
	t.Cleanup(func() { w.Stop() })
	return sw
}

func (sw *subtreeWatch) finish() int64 {
	sw.stop()
	<-sw.stopped
	return sw.max.Load()
}

// setDelegations replaces a pool's spec.delegations.
func setDelegations(g Gomega, ns, pool string, ds ...v1.LicenseDelegation) {
	doc, err := json.Marshal(map[string]any{"spec": map[string]any{"delegations": ds}})
	g.Expect(err).NotTo(HaveOccurred())
	p := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pool}}
	g.Expect(patch(k8s, p, string(doc))).To(Succeed())
}

func delegate(entity, pool string, licenses int32) v1.LicenseDelegation {
	return v1.LicenseDelegation{Entity: entity, LicensePool: pool, Licenses: licenses}
}

// waitCapacity waits until a pool has counted its current generation with
// the given capacity, Ready.
func waitCapacity(g Gomega, ns, pool string, capacity int32) *v1.LicensePool {
	p := &v1.LicensePool{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: pool}, p)).To(Succeed())
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
		g.Expect(p.Status.Capacity).To(Equal(capacity), "capacity of %s/%s: %+v", ns, pool, p.Status)
		g.Expect(meta.IsStatusConditionTrue(p.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "%s/%s: %v", ns, pool, p.Status.Conditions)
	}).WithTimeout(90 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	return p
}

// settledUsed waits until a pool uses used licenses and its users agree.
func settledUsed(g Gomega, ns, pool string, used int32) {
	g.Eventually(func(g Gomega) {
		p := &v1.LicensePool{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: pool}, p)).To(Succeed())
		g.Expect(p.Status.Used).To(Equal(used), "used of %s/%s", ns, pool)
		list := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(countLicensed(list.Items, pool)).To(Equal(int(used)))
	}).WithTimeout(90 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// activate creates n active users in pool from concurrent clients, spread
// over about spread, retrying while the webhook is down (a manager restart)
// and accepting only a full Deny pool as a refusal.
func activate(g Gomega, wg *sync.WaitGroup, ns, pool, prefix string, n int, spread time.Duration, admitted *atomic.Int64) {
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(spread * time.Duration(i) / time.Duration(n))
			u := newUser(ns, fmt.Sprintf("%s-%03d", prefix, i), true)
			u.Spec.LicensePool = pool
			var err error
			for attempt := 0; attempt < 150; attempt++ {
				err = k8s.Create(ctx(), u.DeepCopy())
				if err == nil || !apierrors.IsInternalError(err) && !apierrors.IsServiceUnavailable(err) && !strings.Contains(err.Error(), "connection refused") {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err == nil {
				admitted.Add(1)
				return
			}
			g.Expect(err.Error()).To(ContainSubstring("is full"), "only a full Deny pool may refuse a user")
		}()
	}
}

// TestDelegationHandoff: a parent with three children; delegations raised,
// cut, moved between children and removed, while users are activated
// concurrently in every pool (Deny and Queue), with a manager restart in the
// middle. A watch of every user of the four entities never sees more licensed
// at once than the platform gave: the parent's 30 and the first child's 2.
func TestDelegationHandoff(t *testing.T) {
	g := NewWithT(t)
	restart := withManager(t, nil, func(*operator.Options) {})
	parent, pns := createHierarchyEntity(t, g, "parent", "")
	var kids [3]*v1.Entity
	var kns [3]string
	for i := range kids {
		kids[i], kns[i] = createHierarchyEntity(t, g, fmt.Sprintf("child%d", i), parent.Name)
	}
	waitChildren(g, parent, kids[0].Name, kids[1].Name, kids[2].Name)

	const parentLicenses, ownOfFirst = 30, 2
	const bound = parentLicenses + ownOfFirst
	newPool(g, pns, "default", parentLicenses, v1.EnforcementQueue)
	newPool(g, kns[0], "default", ownOfFirst, v1.EnforcementDeny)
	newPool(g, kns[1], "default", 0, v1.EnforcementQueue)
	newPool(g, kns[2], "default", 0, v1.EnforcementDeny)
	newPool(g, kns[2], "spare", 0, v1.EnforcementQueue)
	waitCapacity(g, pns, "default", parentLicenses)

	sw := watchSubtree(t, g, pns, kns[0], kns[1], kns[2])
	var wg sync.WaitGroup
	var admitted atomic.Int64
	// More demand than any pool will have, arriving during every step.
	activate(g, &wg, pns, "default", "p", 45, 12*time.Second, &admitted)
	activate(g, &wg, kns[0], "default", "a", 25, 12*time.Second, &admitted)
	activate(g, &wg, kns[1], "default", "b", 25, 12*time.Second, &admitted)
	activate(g, &wg, kns[2], "default", "c", 20, 12*time.Second, &admitted)
	activate(g, &wg, kns[2], "spare", "s", 20, 12*time.Second, &admitted)

	k := func(i int) string { return kids[i].Name }
	steps := []struct {
		name string
		ds   []v1.LicenseDelegation
	}{
		{"raise", []v1.LicenseDelegation{delegate(k(0), "default", 10), delegate(k(1), "default", 5)}},
		{"raise more", []v1.LicenseDelegation{delegate(k(0), "default", 15), delegate(k(1), "default", 5), delegate(k(2), "default", 4)}},
		{"cut", []v1.LicenseDelegation{delegate(k(0), "default", 3), delegate(k(1), "default", 5), delegate(k(2), "default", 4)}},
		{"restart", nil},
		{"move between children", []v1.LicenseDelegation{delegate(k(1), "default", 12), delegate(k(2), "default", 4)}},
		{"move between pools", []v1.LicenseDelegation{delegate(k(1), "default", 12), delegate(k(2), "spare", 6)}},
		{"remove", []v1.LicenseDelegation{}},
	}
	for _, s := range steps {
		if s.ds == nil {
			restart()
		} else {
			setDelegations(g, pns, "default", s.ds...)
		}
		time.Sleep(1500 * time.Millisecond) // some activations land during each step, none waits for it
	}
	// Flapping: raises and cuts faster than the pools settle, so that passes
	// of parent and children overlap every change.
	for i := range 40 {
		n := int32(3 + 9*(i%2))
		setDelegations(g, pns, "default", delegate(k(i%3), "default", n), delegate(k((i+1)%3), "default", 15-n))
		time.Sleep(time.Duration(20+15*(i%4)) * time.Millisecond)
	}
	wg.Wait()

	// Once more, and settled: each pool's capacity is what the last
	// delegations say.
	setDelegations(g, pns, "default", delegate(k(0), "default", 4), delegate(k(1), "default", 6), delegate(k(2), "spare", 5))
	p := waitCapacity(g, pns, "default", parentLicenses-15)
	var out []string
	for _, d := range p.Status.Delegated {
		out = append(out, fmt.Sprintf("%s/%s %d of %d", d.Entity, d.LicensePool, d.Offered, d.Licenses))
	}
	g.Expect(out).To(ConsistOf(k(0)+"/default 4 of 4", k(1)+"/default 6 of 6", k(2)+"/spare 5 of 5"))
	c := waitCapacity(g, kns[0], "default", ownOfFirst+4)
	g.Expect(c.Status.DelegatedIn).To(HaveLen(1))
	g.Expect(c.Status.DelegatedIn[0].LicensePool).To(Equal("default"))
	g.Expect(c.Status.DelegatedIn[0].Licenses).To(Equal(int32(4)))
	for _, d := range p.Status.Delegated {
		if d.Entity == k(0) {
			g.Expect(c.Status.DelegatedIn[0].Revision).To(Equal(d.Revision), "the child acknowledges the offer it counts")
		}
	}
	waitCapacity(g, kns[1], "default", 6)
	waitCapacity(g, kns[2], "spare", 5)
	waitCapacity(g, kns[2], "default", 0)
	settledUsed(g, pns, "default", parentLicenses-15)
	settledUsed(g, kns[2], "spare", 5)

	setDelegations(g, pns, "default")
	waitCapacity(g, pns, "default", parentLicenses)
	waitCapacity(g, kns[0], "default", ownOfFirst)
	waitCapacity(g, kns[1], "default", 0)
	settledUsed(g, pns, "default", parentLicenses)
	settledUsed(g, kns[0], "default", ownOfFirst)

	got := sw.finish()
	t.Logf("%d users admitted; at most %d licensed at once in the subtree, the platform gave %d", admitted.Load(), got, bound)
	g.Expect(got).To(BeNumerically("<=", bound), "the subtree held more licenses than the platform gave")
	g.Expect(got).To(Equal(int64(bound)), "the demand should have used every license at some instant")
}

// TestDelegationInvalid: bad delegations are refused by the schema with a
// field-specific message, or stored and reported DelegationInvalid on the
// parent pool; either way nothing is counted on either side.
func TestDelegationInvalid(t *testing.T) {
	g := NewWithT(t)
	parent, pns := createHierarchyEntity(t, g, "parent", "")
	child, cns := createHierarchyEntity(t, g, "child", parent.Name)
	stranger, sns := createHierarchyEntity(t, g, "stranger", "")
	waitChildren(g, parent, child.Name)
	newPool(g, pns, "default", 10, v1.EnforcementDeny)
	newPool(g, cns, "default", 1, v1.EnforcementDeny)
	newPool(g, sns, "default", 1, v1.EnforcementDeny)
	waitCapacity(g, pns, "default", 10)
	waitCapacity(g, cns, "default", 1)
	waitCapacity(g, sns, "default", 1)

	unchanged := func(g Gomega) {
		p := &v1.LicensePool{}
		g.Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: pns, Name: "default"}, p)).To(Succeed())
			g.Expect(p.Status.Capacity).To(Equal(int32(10)))
			g.Expect(p.Status.Delegated).To(BeEmpty())
			for _, ns := range []string{cns, sns} {
				c := &v1.LicensePool{}
				g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "default"}, c)).To(Succeed())
				g.Expect(c.Status.Capacity).To(Equal(int32(1)), "capacity of %s", ns)
			}
		}).WithTimeout(3 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	}

	t.Run("stored and reported", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			d     v1.LicenseDelegation
			field string
			says  string
		}{
			{"not a child", delegate(stranger.Name, "default", 2), "spec.delegations[0].entity", fmt.Sprintf("entity %q is not a sub-entity of %q", stranger.Name, parent.Name)},
			{"missing entity", delegate("nobody-"+parent.Name, "default", 2), "spec.delegations[0].entity", "is not a sub-entity"},
			{"missing pool", delegate(child.Name, "nothere", 2), "spec.delegations[0].licensePool", fmt.Sprintf("license pool \"nothere\" of entity %q does not exist", child.Name)},
			{"itself", delegate(parent.Name, "default", 2), "spec.delegations[0].entity", "its own entity"},
			{"platform", delegate(platformEntity, "default", 2), "spec.delegations[0].entity", "platform entity"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				g := NewWithT(t)
				setDelegations(g, pns, "default", tc.d)
				g.Eventually(func(g Gomega) {
					p := &v1.LicensePool{}
					g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: pns, Name: "default"}, p)).To(Succeed())
					g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
					stalled := meta.FindStatusCondition(p.Status.Conditions, v1.StalledCondition)
					g.Expect(stalled).NotTo(BeNil(), "%v", p.Status.Conditions)
					g.Expect(stalled.Reason).To(Equal(v1.ReasonDelegationInvalid))
					g.Expect(stalled.Message).To(ContainSubstring(tc.field))
					g.Expect(stalled.Message).To(ContainSubstring(tc.says))
					ready := meta.FindStatusCondition(p.Status.Conditions, v1.ReadyCondition)
					g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
					g.Expect(ready.Reason).To(Equal(v1.ReasonDelegationInvalid))
				}).WithTimeout(30 * time.Second).Should(Succeed())
				unchanged(g)
			})
		}
		g := NewWithT(t)
		setDelegations(g, pns, "default")
		waitCapacity(g, pns, "default", 10)
	})

	t.Run("refused by the schema", func(t *testing.T) {
		many := make([]map[string]any, 65)
		for i := range many {
			many[i] = map[string]any{"entity": fmt.Sprintf("e%d", i), "licenses": 1}
		}
		manyDoc, _ := json.Marshal(map[string]any{"spec": map[string]any{"delegations": many}})
		for _, tc := range []struct {
			name, doc, says string
		}{
			{"zero", fmt.Sprintf(`{"spec":{"delegations":[{"entity":%q,"licenses":0}]}}`, child.Name), "spec.delegations[0].licenses"},
			{"negative", fmt.Sprintf(`{"spec":{"delegations":[{"entity":%q,"licenses":-3}]}}`, child.Name), "spec.delegations[0].licenses"},
			{"too many", string(manyDoc), "spec.delegations: Too many"},
			{"duplicate entity", fmt.Sprintf(`{"spec":{"delegations":[{"entity":%q,"licenses":1},{"entity":%q,"licensePool":"other","licenses":2}]}}`, child.Name, child.Name), "spec.delegations[1]: Duplicate value"},
			{"no entity", `{"spec":{"delegations":[{"licenses":1}]}}`, "spec.delegations[0].entity: Required value"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				g := NewWithT(t)
				p := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: pns, Name: "default"}}
				err := patch(k8s, p, tc.doc)
				g.Expect(err).To(HaveOccurred())
				g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
				g.Expect(err.Error()).To(ContainSubstring(tc.says))
				unchanged(g)
			})
		}
	})

	t.Run("valid, then counted", func(t *testing.T) {
		g := NewWithT(t)
		setDelegations(g, pns, "default", delegate(child.Name, "", 3))
		waitCapacity(g, pns, "default", 7)
		waitCapacity(g, cns, "default", 4)

		// The parent's own licenses shrink below the delegation: the child
		// gets what is left, and the parent says what it could not hand over.
		p := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: pns, Name: "default"}}
		g.Expect(patch(k8s, p, `{"spec":{"licenses":2}}`)).To(Succeed())
		p = waitCapacity(g, pns, "default", 0)
		g.Expect(meta.FindStatusCondition(p.Status.Conditions, v1.ReadyCondition).Message).To(ContainSubstring("1 licenses of the delegation to %q not handed over", child.Name))
		waitCapacity(g, cns, "default", 3)
		g.Expect(patch(k8s, p, `{"spec":{"licenses":10}}`)).To(Succeed())
		waitCapacity(g, pns, "default", 7)
		waitCapacity(g, cns, "default", 4)
		setDelegations(g, pns, "default")
		waitCapacity(g, pns, "default", 10)
		waitCapacity(g, cns, "default", 1)
	})
}

// TestDelegationRaiseUnderDeny: a Deny parent pool refuses to delegate more
// than it has available, with the documented message and nothing changed,
// and a raise racing activations in the parent takes only licenses no
// admitted user holds: once settled, every admitted user of the parent is
// licensed, none waits.
func TestDelegationRaiseUnderDeny(t *testing.T) {
	g := NewWithT(t)
	parent, pns := createHierarchyEntity(t, g, "parent", "")
	child, cns := createHierarchyEntity(t, g, "child", parent.Name)
	waitChildren(g, parent, child.Name)
	newPool(g, pns, "default", 10, v1.EnforcementDeny)
	newPool(g, cns, "default", 0, v1.EnforcementDeny)
	waitCapacity(g, pns, "default", 10)
	var wg sync.WaitGroup
	var admitted atomic.Int64
	activate(g, &wg, pns, "default", "held", 7, 0, &admitted)
	wg.Wait()
	settledUsed(g, pns, "default", 7)

	before := waitCapacity(g, pns, "default", 10)
	doc := fmt.Sprintf(`{"spec":{"delegations":[{"entity":%q,"licenses":5}]}}`, child.Name)
	err := patch(k8s, &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: pns, Name: "default"}}, doc)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(
		`spec.delegations[0].licenses: Forbidden: license pool "default" of entity %q has 3 available licenses; cannot delegate 5 more to %q`,
		parent.Name, child.Name)))
	after := waitCapacity(g, pns, "default", 10)
	g.Expect(after.Generation).To(Equal(before.Generation), "a refused raise changes nothing")

	// Three fit: the child counts them, and the parent is then full.
	setDelegations(g, pns, "default", delegate(child.Name, "default", 3))
	waitCapacity(g, pns, "default", 7)
	waitCapacity(g, cns, "default", 3)
	err = k8s.Create(ctx(), newUser(pns, "one-more", true))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("is full: 7/7 licenses used"))

	// The race: the parent holds 7 of 10 with 3 delegated; the delegation
	// is cut to nothing, then raised back by 3 while 6 users ask for the
	// licenses the cut freed. Whoever comes second is refused.
	for round := range 3 {
		setDelegations(g, pns, "default")
		waitCapacity(g, pns, "default", 10)
		var raised atomic.Bool
		admitted.Store(0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// First, among the activations, or after most of them.
			time.Sleep([]time.Duration{0, 60 * time.Millisecond, 180 * time.Millisecond}[round])
			err := patch(k8s, &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: pns, Name: "default"}},
				fmt.Sprintf(`{"spec":{"delegations":[{"entity":%q,"licenses":3}]}}`, child.Name))
			if err == nil {
				raised.Store(true)
				return
			}
			g.Expect(err.Error()).To(ContainSubstring("cannot delegate 3 more"))
		}()
		time.Sleep(20 * time.Millisecond)
		activate(g, &wg, pns, "default", fmt.Sprintf("race%d", round), 6, 200*time.Millisecond, &admitted)
		wg.Wait()
		delegated := int32(0)
		if raised.Load() {
			delegated = 3
		}
		t.Logf("round %d: %d users admitted, %d licenses delegated", round, admitted.Load(), delegated)
		g.Expect(7+int32(admitted.Load())+delegated).To(BeNumerically("<=", 10), "admission promised more than the pool has")
		p := waitCapacity(g, pns, "default", 10-delegated)
		settledUsed(g, pns, "default", 7+int32(admitted.Load()))
		g.Expect(p.Status.Pending).To(BeZero(), "an admitted user of a Deny pool waits for a license")
		// Back to 7 users for the next round.
		list := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(pns))).To(Succeed())
		for i := range list.Items {
			if strings.HasPrefix(list.Items[i].Name, "race") {
				g.Expect(k8s.Delete(ctx(), &list.Items[i])).To(Succeed())
			}
		}
		settledUsed(g, pns, "default", 7)
	}

	// A cut is never refused: the child's most recently licensed users lose
	// their licenses, with a Warning event naming each.
	setDelegations(g, pns, "default", delegate(child.Name, "default", 3))
	waitCapacity(g, cns, "default", 3)
	for i := range 3 {
		g.Expect(k8s.Create(ctx(), newUser(cns, fmt.Sprintf("kid-%d", i), true))).To(Succeed())
		settledUsed(g, cns, "default", int32(i+1))
	}
	setDelegations(g, pns, "default", delegate(child.Name, "default", 1))
	waitCapacity(g, cns, "default", 1)
	g.Eventually(func() []string { return licensedNames(g, cns) }).WithTimeout(30 * time.Second).Should(ConsistOf("kid-0"))
	g.Eventually(func(g Gomega) {
		evs := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx(), evs, client.InNamespace(cns))).To(Succeed())
		revoked := map[string]bool{}
		for _, e := range evs.Items {
			if e.Reason == v1.ReasonLicenseRevoked && e.Type == "Warning" && strings.Contains(e.Note, e.Regarding.Name) {
				revoked[e.Regarding.Name] = true
			}
		}
		g.Expect(revoked).To(Equal(map[string]bool{"kid-1": true, "kid-2": true}))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	waitCapacity(g, pns, "default", 9) // the parent has the two back once the child applied the cut
}
