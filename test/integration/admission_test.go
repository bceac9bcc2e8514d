package integration

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// fullPoolMessage is the refusal DESIGN.md prescribes, word for word.
func fullPoolMessage(pool, entity string, used, capacity int) string {
	return fmt.Sprintf("license pool %q of entity %q is full: %d/%d licenses used; deactivate a user or request more licenses",
		pool, entity, used, capacity)
}

func getPool(g Gomega, ns, name string) *v1.LicensePool {
	p := &v1.LicensePool{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
	return p
}

// TestActivationsRefusedWhenFull: under Deny, each way of activating a user
// (create active, inactive to active, moving pools) is refused when the
// target pool is full, with the message of DESIGN.md on spec.licensePool, and
// the refused request changes nothing.
func TestActivationsRefusedWhenFull(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	newPool(g, ns, "default", 1, v1.EnforcementDeny)
	newPool(g, ns, "other", 1, v1.EnforcementDeny)
	g.Expect(k8s.Create(ctx(), newUser(ns, "first", true))).To(Succeed())
	inOther := newUser(ns, "in-other", true)
	inOther.Spec.LicensePool = "other"
	g.Expect(k8s.Create(ctx(), inOther)).To(Succeed())
	g.Expect(k8s.Create(ctx(), newUser(ns, "sleeper", false))).To(Succeed(), "an inactive user takes no license")

	full := fullPoolMessage("default", e.Name, 1, 1)
	err := k8s.Create(ctx(), newUser(ns, "second", true))
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.licensePool"))
	g.Expect(err.Error()).To(ContainSubstring(full))
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "second"}, &v1.PlatformUser{}))).To(BeTrue())

	sleeper := &v1.PlatformUser{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "sleeper"}, sleeper)).To(Succeed())
	sleeper.Spec.Active = ptr.To(true)
	err = k8s.Update(ctx(), sleeper)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring(full))

	// Moving a licensed user into a full pool is an activation there.
	moved := &v1.PlatformUser{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "first"}, moved)).To(Succeed())
	moved.Spec.LicensePool = "other"
	err = k8s.Update(ctx(), moved)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring(fullPoolMessage("other", e.Name, 1, 1)))

	// Deactivating frees the license: the sleeper may now wake up.
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "first"}, moved)).To(Succeed())
	moved.Spec.Active = ptr.To(false)
	g.Expect(k8s.Update(ctx(), moved)).To(Succeed())
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "sleeper"}, sleeper)).To(Succeed())
	sleeper.Spec.Active = ptr.To(true)
	g.Expect(k8s.Update(ctx(), sleeper)).To(Succeed())
	users := settle(g, ns, "default", 1, 0)
	g.Expect(countLicensed(users, "default")).To(Equal(1))
	g.Expect(licensedNames(g, ns)).To(ConsistOf("sleeper", "in-other"))
}

// TestDryRunReservesNothing: a server-side dry run is checked like the real
// request but leaves no reservation behind.
func TestDryRunReservesNothing(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	newPool(g, ns, "default", 1, v1.EnforcementDeny)

	g.Expect(k8s.Create(ctx(), newUser(ns, "dry", true), client.DryRunAll)).To(Succeed())
	g.Expect(getPool(g, ns, "default").Status.Reservations).To(BeEmpty())
	g.Expect(k8s.Create(ctx(), newUser(ns, "real", true))).To(Succeed(), "the dry run took no license")

	err := k8s.Create(ctx(), newUser(ns, "dry-again", true), client.DryRunAll)
	g.Expect(err).To(HaveOccurred(), "a dry run is checked like the real request")
	g.Expect(err.Error()).To(ContainSubstring(fullPoolMessage("default", e.Name, 1, 1)))
}

// TestReservationOfAUserThatNeverAppearsIsReleased: a license reserved at
// admission for a user that is never stored (the API server failed after the
// webhook answered, say) is held only for the reservation TTL. The test writes
// such a reservation into the pool's status itself, as the webhook would.
func TestReservationOfAUserThatNeverAppearsIsReleased(t *testing.T) {
	g := NewWithT(t)
	withManager(t, nil, func(o *operator.Options) { o.ReservationTTL = 5 * time.Second })
	e, ns := newEntity(t, g)
	newPool(g, ns, "default", 1, v1.EnforcementDeny)
	settle(g, ns, "default", 0, 0)

	// Written as the webhook writes it: on a fresh read, again on a Conflict
	// (the controller may still be writing the pool's counts).
	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pool := getPool(g, ns, "default")
		pool.Status.Reservations = []v1.LicenseReservation{{User: "ghost", ReservedAt: metav1.Now(), Generation: 1}}
		return k8s.Status().Update(ctx(), pool)
	})).To(Succeed())

	err := k8s.Create(ctx(), newUser(ns, "real", true))
	g.Expect(err).To(HaveOccurred(), "the ghost's reservation holds the only license")
	g.Expect(err.Error()).To(ContainSubstring(fullPoolMessage("default", e.Name, 1, 1)))

	g.Eventually(func(g Gomega) {
		g.Expect(getPool(g, ns, "default").Status.Reservations).To(BeEmpty())
	}).WithTimeout(60*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "the controller drops the reservation when it expires")
	g.Expect(k8s.Create(ctx(), newUser(ns, "real", true))).To(Succeed(), "the license is free again")
	settle(g, ns, "default", 1, 0)
}

// TestMissingPool: activating into a pool that does not exist is refused with
// a message naming it; a user whose pool goes away is Stalled.
func TestMissingPool(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	u := newUser(ns, "lost", true)
	u.Spec.LicensePool = "nowhere"
	err := k8s.Create(ctx(), u)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.licensePool"))
	g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(`license pool "nowhere" of entity %q`, e.Name)))

	p := newPool(g, ns, "short-lived", 2, v1.EnforcementDeny)
	u.Spec.LicensePool = p.Name
	g.Expect(k8s.Create(ctx(), u)).To(Succeed())
	settle(g, ns, p.Name, 1, 0)
	g.Expect(k8s.Delete(ctx(), p)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := &v1.PlatformUser{}
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(u), got)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1.LicensedCondition)).To(BeFalse())
		ready := meta.FindStatusCondition(got.Status.Conditions, v1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(v1.ReasonLicensePoolNotFound))
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1.StalledCondition)).To(BeTrue())
	}).WithTimeout(60 * time.Second).Should(Succeed())
}

// TestEmailUniqueWithinEntity: a second user with the same email is refused
// in the same entity and accepted in another one.
func TestEmailUniqueWithinEntity(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	_, otherNS := newEntity(t, g)
	newPool(g, ns, "default", 5, v1.EnforcementDeny)
	newPool(g, otherNS, "default", 5, v1.EnforcementDeny)
	first := newUser(ns, "first", true)
	first.Spec.Email = "marie.curie@example.org"
	g.Expect(k8s.Create(ctx(), first)).To(Succeed())
	settle(g, ns, "default", 1, 0) // the operator has seen the first user

	dup := newUser(ns, "second", true)
	dup.Spec.Email = first.Spec.Email
	err := k8s.Create(ctx(), dup)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.email"))
	g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(`already used by PlatformUser "first" of entity %q`, e.Name)))

	elsewhere := newUser(otherNS, "first", true)
	elsewhere.Spec.Email = first.Spec.Email
	g.Expect(k8s.Create(ctx(), elsewhere)).To(Succeed(), "emails are unique per entity, not across the platform")
}

// TestControllerIsTheAuthority: with the license check of admission bypassed
// (its webhook made to skip every object), 100 active users created at once
// in a Deny pool of 10 still end with exactly 10 licensed, and a watcher
// never sees more.
func TestControllerIsTheAuthority(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	newPool(g, ns, "default", 10, v1.EnforcementDeny)
	bypassWebhook(t, g, "vplatformuser.tenancy.visio.dev")
	lw := watchLicenses(t, g, ns, "default")
	g.Expect(burst(g, ns, 100, nil)).To(Equal(100), "nothing refuses the users without the webhook")
	settle(g, ns, "default", 10, 90)
	g.Expect(lw.finish()).To(BeNumerically("<=", 10))
}

// bypassWebhook makes the named validating webhook skip every object until
// the test ends, as a misconfigured or deleted webhook configuration would.
func bypassWebhook(t *testing.T, g Gomega, name string) {
	t.Helper()
	list := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
	g.Expect(k8s.List(ctx(), list)).To(Succeed())
	for i := range list.Items {
		cfg := &list.Items[i]
		for j := range cfg.Webhooks {
			if cfg.Webhooks[j].Name != name {
				continue
			}
			original := cfg.Webhooks[j].ObjectSelector
			cfg.Webhooks[j].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"visio.dev/test-never": "matches"}}
			g.Expect(k8s.Update(ctx(), cfg)).To(Succeed())
			key := client.ObjectKeyFromObject(cfg)
			t.Cleanup(func() {
				restored := &admissionregistrationv1.ValidatingWebhookConfiguration{}
				if err := k8s.Get(ctx(), key, restored); err == nil {
					restored.Webhooks[j].ObjectSelector = original
					_ = k8s.Update(ctx(), restored)
				}
			})
			time.Sleep(2 * time.Second) // the API server reloads webhook configurations asynchronously
			return
		}
	}
	t.Fatalf("no validating webhook %q", name)
}
