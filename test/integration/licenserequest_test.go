package integration

import (
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// requestFixture is an entity with a pool, an Administrator of it and a
// Concierge of the platform, both bound by the operator and impersonated.
type requestFixture struct {
	ns                   string
	entity               string
	admin, concierge     client.Client
	adminName, deciderID string
}

func newRequestFixture(t *testing.T, g Gomega, licenses int32, enf v1.Enforcement) *requestFixture {
	t.Helper()
	e, ns := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, licenses, enf)
	admin := withRole(newUser(ns, "admin", false), v1.RoleAdministrator)
	g.Expect(k8s.Create(ctx(), admin)).To(Succeed())
	pns := platformNamespace(t, g)
	concierge := withRole(newUser(pns, uniqueName("concierge"), false), v1.RoleConcierge)
	g.Expect(k8s.Create(ctx(), concierge)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), concierge) })
	eventuallyAllowed(g, admin.Spec.Email, access{"create", v1.GroupVersion.Group, "licenserequests", ns, ""}, true)
	eventuallyAllowed(g, concierge.Spec.Email, access{"update", v1.GroupVersion.Group, "licenserequests/status", ns, ""}, true)
	return &requestFixture{ns: ns, entity: e.Name, admin: impersonate(g, admin.Spec.Email), concierge: impersonate(g, concierge.Spec.Email),
		adminName: admin.Spec.Email, deciderID: concierge.Spec.Email}
}

// ask creates a request as the entity's Administrator.
func (f *requestFixture) ask(g Gomega, name string, licenses int32, duration time.Duration) *v1.LicenseRequest {
	lr := &v1.LicenseRequest{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: v1.LicenseRequestSpec{Licenses: licenses, Reason: "school year: more teachers"}}
	if duration > 0 {
		lr.Spec.Duration = &metav1.Duration{Duration: duration}
	}
	g.Expect(f.admin.Create(ctx(), lr)).To(Succeed())
	return lr
}

// decide writes a decision as c, under the name by, at at.
// A conflict (the operator wrote the request's conditions meanwhile) is
// retried, as kubectl would; any other answer is returned.
func decide(c client.Client, ns, name string, state v1.LicenseDecisionState, by string, at time.Time) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lr := &v1.LicenseRequest{}
		if err := k8s.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name}, lr); err != nil {
			return err
		}
		lr.Status.Decision = &v1.LicenseDecision{State: state, By: by, At: metav1.NewTime(at), Message: "decided in a test"}
		return c.Status().Update(ctx(), lr)
	})
}

// requestReady waits until the request's Ready condition has reason.
func requestReady(g Gomega, ns, name, reason string) *v1.LicenseRequest {
	lr := &v1.LicenseRequest{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name}, lr)).To(Succeed())
		c := meta.FindStatusCondition(lr.Status.Conditions, v1.ReadyCondition)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(reason), "Ready: %s", c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(lr.Generation))
		// What Flux, Argo CD and kubectl wait read of it.
		want := map[string]status.Status{v1.ReasonAwaitingDecision: status.InProgressStatus, v1.ReasonGranted: status.CurrentStatus,
			v1.ReasonDenied: status.FailedStatus, v1.ReasonExpired: status.FailedStatus, v1.ReasonLicensePoolNotFound: status.FailedStatus}[reason]
		g.Expect(kstatusOf(g, lr).Status).To(Equal(want), "kstatus of a request %s", reason)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return lr
}

// poolCounts waits until the default pool of ns shows capacity and requested.
func poolCounts(g Gomega, ns string, capacity, requested int32) {
	g.Eventually(func(g Gomega) {
		p := &v1.LicensePool{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: v1.DefaultLicensePool}, p)).To(Succeed())
		g.Expect(p.Status.Capacity).To(Equal(capacity), "capacity")
		g.Expect(p.Status.Requested).To(Equal(requested), "requested")
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// requestEvents are the reasons of the events recorded about a request, in order.
func requestEvents(g Gomega, ns, name string) []string {
	evs := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx(), evs, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, ev := range evs.Items {
		if ev.Regarding.Kind == "LicenseRequest" && ev.Regarding.Name == name {
			out = append(out, ev.Reason)
		}
	}
	return out
}

// TestLicenseRequestApprovedLicensesWaitingUsers: an Administrator asks for 2
// licenses of a full Queue pool; the pool and the Entity show them requested;
// a Concierge approves and the two users waiting longest are licensed, in
// creation order; a second decision is refused with the one that stands.
func TestLicenseRequestApprovedLicensesWaitingUsers(t *testing.T) {
	g := NewWithT(t)
	f := newRequestFixture(t, g, 2, v1.EnforcementQueue)
	for i := range 5 {
		g.Expect(k8s.Create(ctx(), newUser(f.ns, fmt.Sprintf("user-%d", i), true))).To(Succeed())
		time.Sleep(1100 * time.Millisecond) // creation order is by the second
	}
	settle(g, f.ns, v1.DefaultLicensePool, 2, 3)

	f.ask(g, "more", 2, 0)
	lr := requestReady(g, f.ns, "more", v1.ReasonAwaitingDecision)
	g.Expect(meta.IsStatusConditionTrue(lr.Status.Conditions, v1.ReconcilingCondition)).To(BeTrue(), "awaiting is in progress, not stalled")
	g.Expect(meta.FindStatusCondition(lr.Status.Conditions, v1.StalledCondition)).To(BeNil())
	poolCounts(g, f.ns, 2, 2)
	g.Eventually(func(g Gomega) {
		e := &v1.Entity{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: f.entity}, e)).To(Succeed())
		g.Expect(e.Status.Licenses.Requested).To(Equal(int32(2)))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	g.Expect(decide(f.concierge, f.ns, "more", v1.DecisionApproved, f.deciderID, time.Now())).To(Succeed())
	lr = requestReady(g, f.ns, "more", v1.ReasonGranted)
	g.Expect(lr.Finalizers).To(ContainElement(v1.LicenseRequestFinalizer))
	g.Expect(meta.IsStatusConditionTrue(lr.Status.Conditions, v1.ApprovedCondition)).To(BeTrue())
	g.Expect(lr.Status.ExpiresAt).To(BeNil(), "no duration: no expiry")
	poolCounts(g, f.ns, 4, 0)
	users := settle(g, f.ns, v1.DefaultLicensePool, 4, 1)
	for _, u := range users {
		licensed := meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)
		g.Expect(licensed).To(Equal(u.Name != "user-4" && u.Spec.Role != v1.RoleAdministrator), "%s licensed=%v", u.Name, licensed)
	}

	err := decide(f.concierge, f.ns, "more", v1.DecisionDenied, f.deciderID, time.Now())
	g.Expect(err).To(HaveOccurred(), "a decision is final")
	g.Expect(err.Error()).To(ContainSubstring("already Approved by " + f.deciderID))
	g.Eventually(func() []string { return requestEvents(g, f.ns, "more") }).WithTimeout(30 * time.Second).
		Should(ContainElements(v1.ReasonLicensesRequested, v1.ReasonLicensesGranted))

	// The spec is immutable.
	lr = &v1.LicenseRequest{}
	g.Expect(k8s.Get(ctx(), types.NamespacedName{Namespace: f.ns, Name: "more"}, lr)).To(Succeed())
	lr.Spec.Licenses = 200
	err = k8s.Update(ctx(), lr)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec is immutable"))
}

// TestLicenseRequestDenied: a denied request is Stalled with the decider's
// message, and stops counting as requested.
func TestLicenseRequestDenied(t *testing.T) {
	g := NewWithT(t)
	f := newRequestFixture(t, g, 2, v1.EnforcementDeny)
	f.ask(g, "more", 3, 0)
	poolCounts(g, f.ns, 2, 3)
	g.Expect(decide(f.concierge, f.ns, "more", v1.DecisionDenied, f.deciderID, time.Now())).To(Succeed())
	lr := requestReady(g, f.ns, "more", v1.ReasonDenied)
	g.Expect(meta.IsStatusConditionTrue(lr.Status.Conditions, v1.StalledCondition)).To(BeTrue())
	g.Expect(meta.FindStatusCondition(lr.Status.Conditions, v1.ReadyCondition).Message).To(ContainSubstring("decided in a test"))
	g.Expect(lr.Finalizers).NotTo(ContainElement(v1.LicenseRequestFinalizer))
	poolCounts(g, f.ns, 2, 0)
	g.Eventually(func() []string { return requestEvents(g, f.ns, "more") }).WithTimeout(30 * time.Second).
		Should(ContainElement(v1.ReasonLicensesDenied))
}

// TestLicenseRequestExpiry: an approval whose duration ends while its
// licenses are held: the most recently licensed users lose them, with
// Warning events, and the request says Expired, with no other event needed.
func TestLicenseRequestExpiry(t *testing.T) {
	g := NewWithT(t)
	f := newRequestFixture(t, g, 1, v1.EnforcementDeny)
	g.Expect(k8s.Create(ctx(), newUser(f.ns, "first", true))).To(Succeed())
	settle(g, f.ns, v1.DefaultLicensePool, 1, 0)
	f.ask(g, "short", 2, time.Hour)
	// Approved an hour ago, less 8 seconds: it expires 8 seconds from now.
	g.Expect(decide(f.concierge, f.ns, "short", v1.DecisionApproved, f.deciderID, time.Now().Add(-time.Hour+8*time.Second))).To(Succeed())
	lr := requestReady(g, f.ns, "short", v1.ReasonGranted)
	g.Expect(lr.Status.ExpiresAt).NotTo(BeNil())
	poolCounts(g, f.ns, 3, 0)
	for _, name := range []string{"second", "third"} {
		g.Expect(k8s.Create(ctx(), newUser(f.ns, name, true))).To(Succeed())
	}
	settle(g, f.ns, v1.DefaultLicensePool, 3, 0)

	requestReady(g, f.ns, "short", v1.ReasonExpired)
	poolCounts(g, f.ns, 1, 0)
	g.Eventually(func(g Gomega) {
		for name, want := range map[string]bool{"first": true, "second": false, "third": false} {
			u := &v1.PlatformUser{}
			g.Expect(k8s.Get(ctx(), types.NamespacedName{Namespace: f.ns, Name: name}, u)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)).To(Equal(want), name)
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(func() []string { return requestEvents(g, f.ns, "short") }).WithTimeout(30 * time.Second).
		Should(ContainElement(v1.ReasonLicensesExpired))
	evs := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx(), evs, client.InNamespace(f.ns))).To(Succeed())
	revoked := 0
	for _, ev := range evs.Items {
		if ev.Reason == v1.ReasonLicenseRevoked && ev.Type == "Warning" {
			revoked++
		}
	}
	g.Expect(revoked).To(Equal(2), "one Warning event per user that lost its license")
}

// TestLicenseRequestDeletion: deleting an approved request takes its licenses
// back, and the request is gone only once no user holds more than the pool
// has without it.
func TestLicenseRequestDeletion(t *testing.T) {
	g := NewWithT(t)
	f := newRequestFixture(t, g, 1, v1.EnforcementDeny)
	f.ask(g, "more", 2, 0)
	g.Expect(decide(f.concierge, f.ns, "more", v1.DecisionApproved, f.deciderID, time.Now())).To(Succeed())
	requestReady(g, f.ns, "more", v1.ReasonGranted)
	poolCounts(g, f.ns, 3, 0)
	for i := range 3 {
		g.Expect(k8s.Create(ctx(), newUser(f.ns, fmt.Sprintf("user-%d", i), true))).To(Succeed())
	}
	settle(g, f.ns, v1.DefaultLicensePool, 3, 0)

	lr := &v1.LicenseRequest{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "more"}}
	g.Expect(f.admin.Delete(ctx(), lr)).To(Succeed(), "an Administrator withdraws its own request")
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(lr), &v1.LicenseRequest{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	// Gone: every user that lost a license was written before.
	list := &v1.PlatformUserList{}
	g.Expect(k8s.List(ctx(), list, client.InNamespace(f.ns))).To(Succeed())
	g.Expect(countLicensed(list.Items, v1.DefaultLicensePool)).To(BeNumerically("<=", 1))
	poolCounts(g, f.ns, 1, 0)
}

// TestLicenseRequestApprovalRacesActivations: 50 clients activate users in a
// full Deny pool of 10, retrying while it is full, while a Concierge approves
// 20 more: exactly 30 are admitted and licensed, and a watch of every user
// never sees more than the capacity in force.
func TestLicenseRequestApprovalRacesActivations(t *testing.T) {
	g := NewWithT(t)
	f := newRequestFixture(t, g, 10, v1.EnforcementDeny)
	f.ask(g, "more", 20, 0)
	poolCounts(g, f.ns, 10, 20)
	lw := watchLicenses(t, g, f.ns, v1.DefaultLicensePool)

	var admitted atomic.Int64
	var approved atomic.Bool
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			refusedAfterApproval := 0
			for {
				err := k8s.Create(ctx(), newUser(f.ns, fmt.Sprintf("user-%02d", i), true))
				if err == nil {
					admitted.Add(1)
					return
				}
				if !strings.Contains(err.Error(), "is full") {
					t.Errorf("user-%02d: %v", i, err)
					return
				}
				// Once the approval is in, a few refusals in a row mean the
				// 20 new licenses are taken.
				if approved.Load() {
					if refusedAfterApproval++; refusedAfterApproval == 20 {
						return
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	close(start)
	time.Sleep(500 * time.Millisecond) // let the first 10 go through and the rest wait
	g.Expect(decide(f.concierge, f.ns, "more", v1.DecisionApproved, f.deciderID, time.Now())).To(Succeed())
	requestReady(g, f.ns, "more", v1.ReasonGranted)
	approved.Store(true)
	wg.Wait()

	g.Expect(admitted.Load()).To(Equal(int64(30)), "admitted")
	settle(g, f.ns, v1.DefaultLicensePool, 30, 0)
	maxSeen := lw.finish()
	t.Logf("50 clients, 10 licenses then 30: %d admitted, at most %d licensed at once", admitted.Load(), maxSeen)
	g.Expect(maxSeen).To(Equal(int64(30)))
}

// TestLicenseDecisionRefused: only a Concierge or a platform administrator
// decides, under its own name; an Administrator of the entity, a
// DelegatedOrganizer of it and an Administrator of another entity are
// refused, with the webhooks and without them.
func TestLicenseDecisionRefused(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		g := NewWithT(t)
		f := newRequestFixture(t, g, 1, v1.EnforcementDeny)
		f.ask(g, "more", 1, 0)
		organizer := withRole(newUser(f.ns, "organizer", true), v1.RoleDelegatedOrganizer)
		g.Expect(k8s.Create(ctx(), organizer)).To(Succeed())
		_, otherNS := newEntity(t, g)
		other := withRole(newUser(otherNS, "other-admin", false), v1.RoleAdministrator)
		g.Expect(k8s.Create(ctx(), other)).To(Succeed())
		eventuallyAllowed(g, other.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", otherNS, ""}, true)

		for who, c := range map[string]struct {
			client client.Client
			name   string
		}{
			"entity administrator":          {f.admin, f.adminName},
			"delegated organizer":           {impersonate(g, organizer.Spec.Email), organizer.Spec.Email},
			"administrator of other entity": {impersonate(g, other.Spec.Email), other.Spec.Email},
		} {
			err := decide(c.client, f.ns, "more", v1.DecisionApproved, c.name, time.Now())
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s deciding: %v", who, err)
		}
		// A Concierge deciding under another name.
		err := decide(f.concierge, f.ns, "more", v1.DecisionApproved, f.adminName, time.Now())
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring("status.decision.by: must be the name of the user who decides, " + f.deciderID))
		// An Administrator editing its request.
		lr := &v1.LicenseRequest{}
		g.Expect(f.admin.Get(ctx(), types.NamespacedName{Namespace: f.ns, Name: "more"}, lr)).To(Succeed())
		lr.Spec.Licenses = 100
		g.Expect(apierrors.IsForbidden(f.admin.Update(ctx(), lr))).To(BeTrue(), "an Administrator cannot edit a request")

		requestReady(g, f.ns, "more", v1.ReasonAwaitingDecision)
		poolCounts(g, f.ns, 1, 1)
	})
}

// TestLicenseRequestForMissingPool: a request for a pool that does not exist
// is refused at admission with a message naming the field, and, when the
// webhooks are not called, reported Stalled by its controller.
func TestLicenseRequestForMissingPool(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		g := NewWithT(t)
		_, ns := newEntity(t, g)
		lr := &v1.LicenseRequest{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lost"},
			Spec: v1.LicenseRequestSpec{LicensePool: "nope", Licenses: 3, Reason: "a pool that is not there"}}
		err := k8s.Create(ctx(), lr)
		if webhooks {
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring(`spec.licensePool: Not found: "nope (no such license pool in namespace ` + ns))
			return
		}
		g.Expect(err).NotTo(HaveOccurred())
		got := requestReady(g, ns, "lost", v1.ReasonLicensePoolNotFound)
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1.StalledCondition)).To(BeTrue())
	})
}
