package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/capabilities"
	"visio.dev/operator/internal/controller"
	"visio.dev/operator/internal/operator"
)

// platformEntityForTest creates an Entity and runs the manager, for the rest
// of the test, with that Entity as the platform entity: the one namespace
// where the Concierge role counts.
func platformEntityForTest(t *testing.T, g Gomega) (*v1.Entity, string) {
	t.Helper()
	e, ns := newEntity(t, g)
	withManager(t, nil, func(o *operator.Options) { o.PlatformEntity = e.Name })
	withPolicyPlatformEntity(t, g, e.Name, ns)
	return e, ns
}

// withPolicyPlatformEntity points the admission policy that keeps Concierges
// in the platform entity at entity (namespace ns) until the test ends, as an
// install with another platformEntity value would, and waits until the API
// server enforces the change (it reads policies through an informer).
func withPolicyPlatformEntity(t *testing.T, g Gomega, entity, ns string) {
	t.Helper()
	refusedByPolicy := ContainSubstring("valid only in the namespace of the platform entity")
	set := func(g Gomega, name string, refused bool) {
		g.Eventually(func() error {
			p := &admissionregistrationv1.ValidatingAdmissionPolicy{}
			if err := k8s.Get(ctx(), client.ObjectKey{Name: "visio-concierge-in-platform-entity"}, p); err != nil {
				return err
			}
			for i := range p.Spec.Variables {
				if p.Spec.Variables[i].Name == "platformEntity" {
					p.Spec.Variables[i].Expression = fmt.Sprintf("'%s'", name)
				}
			}
			return k8s.Update(ctx(), p)
		}).WithTimeout(30 * time.Second).Should(Succeed())
		g.Eventually(func(g Gomega) {
			probe := withRole(newUser(ns, uniqueName("policy-probe"), false), v1.RoleConcierge)
			err := k8s.Create(ctx(), probe, client.DryRunAll)
			if refused {
				g.Expect(err).To(MatchError(refusedByPolicy))
			} else if err != nil {
				g.Expect(err).NotTo(MatchError(refusedByPolicy))
			}
		}).WithTimeout(30 * time.Second).Should(Succeed())
	}
	set(g, entity, false)
	t.Cleanup(func() { set(NewWithT(t), platformEntity, true) })
}

// withoutConciergePolicies deletes the bindings of the admission policies that
// keep the Concierge role in the platform entity and to those who may grant
// it, until the test ends: with the webhooks gone too, nothing is left but the
// controllers, which must still give such a user nothing (Guarantee 7).
func withoutConciergePolicies(t testing.TB, g Gomega, ns string) {
	t.Helper()
	for _, name := range []string{"visio-concierge-in-platform-entity", "visio-concierge-grant"} {
		b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, b)).To(Succeed())
		g.Expect(k8s.Delete(ctx(), b)).To(Succeed())
		saved := b.DeepCopy()
		t.Cleanup(func() {
			saved.ResourceVersion, saved.UID, saved.CreationTimestamp, saved.ManagedFields = "", "", metav1.Time{}, nil
			if err := k8s.Create(ctx(), saved); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Errorf("cannot restore admission policy binding %s: %v", saved.Name, err)
			}
		})
	}
	g.Eventually(func() error {
		return k8s.Create(ctx(), withRole(newUser(ns, uniqueName("policy-probe"), false), v1.RoleConcierge), client.DryRunAll)
	}).WithTimeout(30*time.Second).Should(Succeed(), "the Concierge policies are still enforced")
}

// withoutWebhooks deletes the validating webhook configurations until the
// test ends, as on a cluster where they are missing (a chart installed with
// webhook.enabled=false, a configuration pruned by GitOps), and waits until
// the API server stops calling them.
func withoutWebhooks(t testing.TB, g Gomega) {
	t.Helper()
	list := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
	g.Expect(k8s.List(ctx(), list)).To(Succeed())
	g.Expect(list.Items).NotTo(BeEmpty())
	for i := range list.Items {
		saved := list.Items[i].DeepCopy()
		g.Expect(k8s.Delete(ctx(), &list.Items[i])).To(Succeed())
		t.Cleanup(func() {
			saved.ResourceVersion, saved.UID, saved.CreationTimestamp, saved.ManagedFields = "", "", metav1.Time{}, nil
			if err := k8s.Create(ctx(), saved); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Errorf("cannot restore webhook configuration %s: %v", saved.Name, err)
			}
			waitWebhooksCalled(NewWithT(t), true)
		})
	}
	waitWebhooksCalled(g, false)
}

// waitWebhooksCalled waits until the API server calls the webhooks (want) or
// no longer does, probing with a dry-run create that only the webhook refuses.
func waitWebhooksCalled(g Gomega, want bool) {
	g.Eventually(func() bool {
		err := k8s.Create(ctx(), newUser("default", fmt.Sprintf("probe-%d", time.Now().UnixNano()), false), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "belongs to no entity")
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(Equal(want), "webhooks called: want %v", want)
}

// inBothModes runs f once with the webhooks and once without them: what
// protects people and data must hold in both.
func inBothModes(t *testing.T, f func(t *testing.T, webhooks bool)) {
	t.Run("webhooks", func(t *testing.T) { f(t, true) })
	t.Run("no-webhooks", func(t *testing.T) {
		withoutWebhooks(t, NewWithT(t))
		f(t, false)
	})
}

// TestSecuritySuite tries what a hostile entity administrator or a careless
// platform team would, with the webhooks and on a cluster without them.
func TestSecuritySuite(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		t.Run("administrator-makes-itself-concierge", func(t *testing.T) { selfConcierge(t, webhooks) })
		t.Run("protected-entity-deleted", func(t *testing.T) { protectedEntityDeleted(t, webhooks) })
		t.Run("forged-entity-namespace", func(t *testing.T) { forgedNamespace(t, webhooks) })
		t.Run("same-email-at-the-same-instant", func(t *testing.T) { sameEmailAtOnce(t, webhooks) })
		t.Run("deny-pool-burst", func(t *testing.T) { denyPoolBurst(t, webhooks) })
	})
}

// selfConcierge: an entity Administrator gives itself the Concierge role, by
// a new user with its own email, a new user with another address of its own,
// and by promoting itself. With the webhooks, each is refused and says where
// Concierges belong; without them each is stored, and the controllers give
// it nothing: no Secret of another entity, no room or user cluster-wide.
func selfConcierge(t *testing.T, webhooks bool) {
	g := NewWithT(t)
	applyPlatformRoles(g)
	platform, platformNS := platformEntityForTest(t, g)
	_, nsA := newEntity(t, g)
	_, nsB := newEntity(t, g)
	newPool(g, nsA, v1.DefaultLicensePool, 5, v1.EnforcementDeny)
	alice := withRole(newUser(nsA, "alice", false), v1.RoleAdministrator)
	g.Expect(k8s.Create(ctx(), alice)).To(Succeed())
	eventuallyAllowed(g, alice.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", nsA, ""}, true)
	asAlice := impersonate(g, alice.Spec.Email)
	if !webhooks {
		withoutConciergePolicies(t, g, nsA)
	}

	second := "alice.support@" + nsA + ".example"
	attempts := []struct {
		what string
		do   func() error
	}{
		{"create a Concierge with its own email", func() error {
			u := withRole(newUser(nsA, "alice-twin", false), v1.RoleConcierge)
			u.Spec.Email = alice.Spec.Email
			return asAlice.Create(ctx(), u)
		}},
		{"create a Concierge with another address of its own", func() error {
			u := withRole(newUser(nsA, "alice-support", false), v1.RoleConcierge)
			u.Spec.Email = second
			return asAlice.Create(ctx(), u)
		}},
		{"promote itself to Concierge", func() error { return patch(asAlice, alice.DeepCopy(), `{"spec":{"role":"Concierge"}}`) }},
	}
	for _, a := range attempts {
		err := a.do()
		if webhooks {
			g.Expect(err).To(HaveOccurred(), a.what)
			// Two admission policies refuse it (the role is the platform
			// entity's only; an entity Administrator may not grant it), and
			// the webhook too: the API server reports whichever it evaluates
			// first, and its order is its own.
			g.Expect(err.Error()).To(SatisfyAny(ContainSubstring("platform entity"), ContainSubstring("already used"),
				ContainSubstring("spec.role: only a Concierge or a platform administrator may grant the Concierge role")), a.what)
			if strings.Contains(err.Error(), "platform entity") {
				g.Expect(err.Error()).To(ContainSubstring(platform.Name), a.what)
			}
			t.Logf("%-55s refused at admission: %v", a.what, err)
		} else {
			g.Expect(err).NotTo(HaveOccurred(), "%s: nothing refuses it without the webhooks", a.what)
			t.Logf("%-55s stored (no webhook): the controller must give it nothing", a.what)
		}
	}

	if !webhooks {
		// The promoted user says why it is not a Concierge, and has an
		// Administrator's capabilities, not more.
		g.Eventually(func(g Gomega) {
			u := &v1.PlatformUser{}
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(alice), u)).To(Succeed())
			stalled := meta.FindStatusCondition(u.Status.Conditions, v1.StalledCondition)
			g.Expect(stalled).NotTo(BeNil())
			g.Expect(stalled.Reason).To(Equal(v1.ReasonConciergeOutsidePlatform))
			g.Expect(stalled.Message).To(ContainSubstring(platform.Name))
			g.Expect(meta.IsStatusConditionFalse(u.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
			g.Expect(u.Status.Capabilities).To(ConsistOf(capabilities.For(v1.RoleAdministrator, false)))
			g.Expect(u.Status.ObservedGeneration).To(Equal(u.Generation))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		support := &v1.PlatformUser{}
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: nsA, Name: "alice-support"}, support)).To(Succeed())
			g.Expect(meta.FindStatusCondition(support.Status.Conditions, v1.StalledCondition)).To(HaveField("Reason", v1.ReasonConciergeOutsidePlatform))
			twin := &v1.PlatformUser{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: nsA, Name: "alice-twin"}, twin)).To(Succeed())
			g.Expect(meta.FindStatusCondition(twin.Status.Conditions, v1.StalledCondition)).To(HaveField("Reason", v1.ReasonEmailConflict))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		// The Concierge binding and the entity's bindings have settled on
		// what the operator decided.
		g.Eventually(func() []string {
			return bindingSubjects(g, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: controller.ConciergesBinding}})
		}).WithTimeout(60 * time.Second).ShouldNot(ContainElements(alice.Spec.Email, second))
	}

	// Whatever was stored, neither address gains anything beyond an
	// Administrator of entity A: every access is checked at each poll, for
	// two seconds.
	var forbidden []struct {
		who string
		a   access
	}
	for _, who := range []string{alice.Spec.Email, second} {
		for _, a := range []access{
			{"get", "", "secrets", nsB, ""},
			{"list", "", "secrets", nsB, ""},
			{"get", "", "secrets", platformNS, ""},
			{"create", v1.GroupVersion.Group, "vmrs", nsB, ""},
			{"create", v1.GroupVersion.Group, "vmrs", "", ""},
			{"list", v1.GroupVersion.Group, "vmrs", "", ""},
			{"list", v1.GroupVersion.Group, "platformusers", "", ""},
			{"create", v1.GroupVersion.Group, "platformusers", nsB, ""},
			{"list", v1.GroupVersion.Group, "entities", "", ""},
		} {
			forbidden = append(forbidden, struct {
				who string
				a   access
			}{who, a})
		}
	}
	g.Consistently(func(g Gomega) {
		for _, f := range forbidden {
			g.Expect(allowed(g, f.who, f.a)).To(BeFalse(), "%s must not be allowed to %s", f.who, f.a)
		}
	}).WithTimeout(2 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	// The Administrator keeps administering its own entity.
	g.Expect(allowed(g, alice.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", nsA, ""})).To(BeTrue())
}

// protectedEntityDeleted: deleting a protected Entity that has a user is
// refused by the webhook; without it the Entity waits in deletion, Stalled
// with reason DeletionProtected and a message that counts what remains, its
// namespace and user kept, and goes with them once protection is lifted.
func protectedEntityDeleted(t *testing.T, webhooks bool) {
	g := NewWithT(t)
	e, ns := protectedEntity(t, g, "guarded")
	newPool(g, ns, v1.DefaultLicensePool, 5, v1.EnforcementDeny)
	ana := newUser(ns, "ana", true)
	g.Expect(k8s.Create(ctx(), ana)).To(Succeed())
	settle(g, ns, v1.DefaultLicensePool, 1, 0)

	err := k8s.Delete(ctx(), e)
	if webhooks {
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring("1 PlatformUser"))
		t.Logf("delete of a protected Entity refused by the webhook: %v", err)
		return
	}
	g.Expect(err).NotTo(HaveOccurred(), "nothing refuses the deletion without the webhooks")
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(e.DeletionTimestamp).NotTo(BeNil())
		stalled := meta.FindStatusCondition(e.Status.Conditions, v1.StalledCondition)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Reason).To(Equal(v1.ReasonDeletionProtected))
		g.Expect(stalled.Message).To(Equal(fmt.Sprintf(
			"deletion protected: 1 user remains in namespace %q; delete them or set spec.deletionProtection to false", ns)))
		g.Expect(meta.IsStatusConditionFalse(e.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	}).WithTimeout(entityTimeout).Should(Succeed())
	t.Logf("protected Entity deleted without the webhook: kept, %s", meta.FindStatusCondition(e.Status.Conditions, v1.ReadyCondition).Message)
	// It stays so: the namespace and the user are still there a while later.
	g.Consistently(func(g Gomega) {
		nsObj := &corev1.Namespace{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
		g.Expect(nsObj.DeletionTimestamp).To(BeNil())
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(ana), &v1.PlatformUser{})).To(Succeed())
	}).WithTimeout(3 * time.Second).Should(Succeed())
	g.Eventually(func() []string { return entityEventNotes(g, e.Name, v1.ReasonDeletionProtected) }).
		WithTimeout(entityTimeout).ShouldNot(BeEmpty())

	// Lifting the protection finishes the deletion, with no new delete.
	g.Expect(patch(k8s, e, `{"spec":{"deletionProtection":false}}`)).To(Succeed())
	gone(g, e)
	gone(g, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	gone(g, ana)
}

// entityEventNotes are the notes of the events with reason on an Entity.
func entityEventNotes(g Gomega, name, reason string) []string {
	var out []string
	for _, e := range entityEvents(g, name, reason) {
		out = append(out, e.Note)
	}
	return out
}

// forgedNamespace: a namespace dressed up as entity A's (its label, and a
// controller owner reference with A's name and UID) but not the one A
// created admits no pool, user or room; without the webhooks what is stored
// there gets no license, no room and no binding.
func forgedNamespace(t *testing.T, webhooks bool) {
	g := NewWithT(t)
	e, _ := newEntity(t, g)
	forged := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   fmt.Sprintf("forged-%d", entitySeq.Add(1)),
		Labels: map[string]string{v1.EntityLabel: e.Name, v1.ManagedByLabel: v1.ManagedByValue},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Entity", Name: e.Name, UID: e.UID,
			Controller: ptr.To(true)}},
	}}
	g.Expect(k8s.Create(ctx(), forged)).To(Succeed())
	t.Cleanup(func() {
		// Dressed up as an entity namespace, it is kept by the admission
		// policy that lets entity namespaces go only with their Entity: undress
		// it first, as an administrator cleaning up would.
		_ = patch(k8s, forged, `{"metadata":{"ownerReferences":null,"labels":null}}`)
		_ = k8s.Delete(ctx(), forged)
	})
	ns := forged.Name

	lp := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v1.DefaultLicensePool}, Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](5)}}
	u := withRole(newUser(ns, "mallory", true), v1.RoleAdministrator)
	r := room(ns, "lobby")
	for _, o := range []client.Object{lp, u, r} {
		err := k8s.Create(ctx(), o)
		if webhooks {
			g.Expect(err).To(HaveOccurred(), "%T in a forged namespace", o)
			g.Expect(err.Error()).To(ContainSubstring("metadata.namespace"))
			g.Expect(err.Error()).To(ContainSubstring("belongs to no entity"))
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
	}
	if webhooks {
		return
	}
	stalledWith := func(obj client.Object, conds func() []metav1.Condition) {
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
			g.Expect(meta.FindStatusCondition(conds(), v1.StalledCondition)).To(HaveField("Reason", v1.ReasonNotInEntityNamespace))
		}).WithTimeout(60*time.Second).Should(Succeed(), "%T %s", obj, obj.GetName())
	}
	stalledWith(lp, func() []metav1.Condition { return lp.Status.Conditions })
	stalledWith(u, func() []metav1.Condition { return u.Status.Conditions })
	stalledWith(r, func() []metav1.Condition { return r.Status.Conditions })
	g.Expect(meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)).To(BeFalse())
	g.Expect(u.Status.Capabilities).To(BeEmpty())
	g.Expect(r.Status.BackendRef).To(BeEmpty())
	g.Expect(r.Status.PINSecretName).To(BeEmpty())
	// No binding of the operator in the forged namespace, so its
	// "Administrator" can do nothing there, and Concierges see no Secret.
	rbs := &rbacv1.RoleBindingList{}
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.List(ctx(), rbs, client.InNamespace(ns))).To(Succeed())
		g.Expect(rbs.Items).To(BeEmpty())
	}).WithTimeout(3 * time.Second).Should(Succeed())
	g.Expect(allowed(g, u.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", ns, ""})).To(BeFalse())
}

// sameEmailAtOnce: two users with the same email created at the same instant
// in one entity, the older a User and the younger an Administrator (or the
// other way round, as the instants fall). The webhook's cache cannot see the
// other one, so both may be stored; exactly one holds the email: it alone is
// bound, the other is Stalled with reason EmailConflict naming it.
func sameEmailAtOnce(t *testing.T, webhooks bool) {
	g := NewWithT(t)
	applyPlatformRoles(g)
	_, ns := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, 5, v1.EnforcementQueue)
	const address = "twin@clash.example"
	var created []*v1.PlatformUser
	for round := 0; round < 20 && len(created) < 2; round++ {
		for _, o := range created {
			_ = k8s.Delete(ctx(), o)
			gone(g, o)
		}
		created = created[:0]
		pair := []*v1.PlatformUser{newUser(ns, fmt.Sprintf("a-user-%d", round), true), withRole(newUser(ns, fmt.Sprintf("b-admin-%d", round), true), v1.RoleAdministrator)}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, u := range pair {
			u.Spec.Email = address
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = k8s.Create(ctx(), u) }()
		}
		wg.Wait()
		for i, err := range errs {
			if err == nil {
				created = append(created, pair[i])
			} else {
				g.Expect(err.Error()).To(ContainSubstring("already used"))
			}
		}
	}
	if len(created) < 2 {
		g.Expect(webhooks).To(BeTrue(), "without the webhooks nothing refuses the second user")
		t.Skip("the webhook saw the first user every time: no clash to resolve")
	}
	for _, u := range created {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(u), u)).To(Succeed())
	}
	holder, loser := created[0], created[1]
	if loser.CreationTimestamp.Before(&holder.CreationTimestamp) ||
		loser.CreationTimestamp.Equal(&holder.CreationTimestamp) && loser.Name < holder.Name {
		holder, loser = loser, holder
	}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(loser), loser)).To(Succeed())
		stalled := meta.FindStatusCondition(loser.Status.Conditions, v1.StalledCondition)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Reason).To(Equal(v1.ReasonEmailConflict))
		g.Expect(stalled.Message).To(ContainSubstring(fmt.Sprintf("%q", holder.Name)))
		g.Expect(loser.Status.Capabilities).To(BeEmpty())
		g.Expect(meta.IsStatusConditionTrue(loser.Status.Conditions, v1.LicensedCondition)).To(BeFalse())
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(holder), holder)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(holder.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	}).WithTimeout(60 * time.Second).Should(Succeed())
	manage := access{"create", v1.GroupVersion.Group, "platformusers", ns, ""}
	eventuallyAllowed(g, address, manage, holder.Spec.Role == v1.RoleAdministrator)
	g.Consistently(func() bool { return allowed(g, address, manage) }).WithTimeout(2 * time.Second).
		Should(Equal(holder.Spec.Role == v1.RoleAdministrator))
	t.Logf("%s holds %s; %s is Stalled (EmailConflict)", holder.Name, address, loser.Name)

	// Deleting the holder hands the email to the other.
	g.Expect(k8s.Delete(ctx(), holder)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(loser), loser)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(loser.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	}).WithTimeout(60 * time.Second).Should(Succeed())
	eventuallyAllowed(g, address, manage, loser.Spec.Role == v1.RoleAdministrator)
}

// denyPoolBurst: 100 concurrent activations into a Deny pool of 10. With the
// webhook exactly 10 are admitted; without it all are stored, and still
// exactly 10 end licensed and a watch never sees more.
func denyPoolBurst(t *testing.T, webhooks bool) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, 10, v1.EnforcementDeny)
	lw := watchLicenses(t, g, ns, v1.DefaultLicensePool)
	admitted := burst(g, ns, 100, nil)
	if webhooks {
		g.Expect(admitted).To(Equal(10))
		settle(g, ns, v1.DefaultLicensePool, 10, 0)
	} else {
		g.Expect(admitted).To(Equal(100), "nothing refuses the users without the webhook")
		settle(g, ns, v1.DefaultLicensePool, 10, 90)
	}
	g.Expect(lw.finish()).To(BeNumerically("<=", 10))
}

// TestUnprovisionableNamesAndBadEmailsRefused: an entity name that cannot
// name a namespace, and an email with invisible characters or capitals, are
// refused by the schema, so with or without the webhooks, naming the field;
// an email not in NFC form is refused by the webhook.
func TestUnprovisionableNamesAndBadEmailsRefused(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		g := NewWithT(t)
		_, ns := newEntity(t, g)
		newPool(g, ns, v1.DefaultLicensePool, 5, v1.EnforcementQueue)
		entity := func(name string) string {
			return "apiVersion: tenancy.visio.dev/v1alpha1\nkind: Entity\nmetadata: {name: '" + name + "'}\nspec: {displayName: X, deletionProtection: false}\n"
		}
		user := func(email string) string {
			return "apiVersion: tenancy.visio.dev/v1alpha1\nkind: PlatformUser\nmetadata: {name: bad-email, namespace: " + ns +
				"}\nspec: {givenName: A, familyName: B, active: false, email: \"" + email + "\"}\n"
		}
		cases := []struct {
			name, manifest string
			want           []string
		}{
			{"entity name with a dot", entity("rennes.metropole"), []string{"metadata.name", "no '.'"}},
			{"entity name too long for its namespace", entity(strings.Repeat("a", 57)), []string{"metadata.name", "56"}},
			{"email with a zero-width space", user(`anne\u200b@rennes.example`), []string{"spec.email", "invisible"}},
			{"email with a no-break space", user(`anne\u00a0@rennes.example`), []string{"spec.email", "spaces"}},
			{"email with a right-to-left override", user(`anne@\u202erennes.example`), []string{"spec.email", "invisible"}},
			{"email with a non-ASCII capital", user(`\u00c9lise@rennes.example`), []string{"spec.email", "lower case"}},
		}
		if webhooks {
			cases = append(cases, struct {
				name, manifest string
				want           []string
			}{"email not in NFC form", user(`he\u0301le\u0300ne@rennes.example`), []string{"spec.email", "NFC", "h\u00e9l\u00e8ne@rennes.example"}})
		}
		for _, c := range cases {
			obj := fromYAML(g, c.manifest)
			err := k8s.Create(ctx(), obj)
			g.Expect(err).To(HaveOccurred(), "%s: the API server accepted:\n%s", c.name, c.manifest)
			for _, w := range c.want {
				g.Expect(err.Error()).To(ContainSubstring(w), c.name)
			}
			t.Logf("%-40s refused: %v", c.name, err)
		}
		// A dashed name of the right length is fine.
		ok := fromYAML(g, entity(fmt.Sprintf("ok-%d-rennes-metropole", entitySeq.Add(1))))
		g.Expect(k8s.Create(ctx(), ok)).To(Succeed())
		g.Expect(k8s.Delete(ctx(), ok)).To(Succeed())
	})
}
