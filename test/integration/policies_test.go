package integration

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/controller"
)

// TestEntityNamespaceGoesOnlyWithItsEntity: deleting an entity namespace
// directly is refused by the admission policy, to the cluster administrator
// (system:masters) too and to one who impersonates the operator, with a
// message naming the Entity to delete instead; deleting the Entity removes it.
func TestEntityNamespaceGoesOnlyWithItsEntity(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	namespace := func() *corev1.Namespace { return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}} }

	err := k8s.Delete(ctx(), namespace())
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("belongs to Entity " + e.Name))
	g.Expect(err.Error()).To(ContainSubstring("kubectl delete entity " + e.Name))

	// Impersonating the operator is not enough: the operator approves the
	// deletion on the namespace first, and nobody else may.
	asOperator := impersonate(g, managerServiceAccount, "system:serviceaccounts")
	err = asOperator.Delete(ctx(), namespace())
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	err = patch(k8s, namespace(), `{"metadata":{"annotations":{"`+controller.NamespaceDeletionApproved+`":"`+string(e.UID)+`"}}}`)
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("set by the visio operator only"))
	got := namespace()
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(got), got)).To(Succeed())
	g.Expect(got.DeletionTimestamp).To(BeNil())

	// The operator may delete entity namespaces only, whatever its ClusterRole
	// allows on namespaces.
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("plain")}}
	g.Expect(k8s.Create(ctx(), plain)).To(Succeed())
	err = asOperator.Delete(ctx(), plain)
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("entity namespaces only"))
	g.Expect(k8s.Delete(ctx(), plain)).To(Succeed(), "other namespaces are not the policy's business")
	// Nor does it write Secrets anywhere else.
	err = asOperator.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: uniqueName("stray")}})
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("and in entity namespaces only"))

	// The Entity's own deletion removes its namespace.
	g.Expect(k8s.Delete(ctx(), e)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: ns}, &corev1.Namespace{}))
	}).WithTimeout(90*time.Second).Should(BeTrue(), "namespace %s outlived its Entity", ns)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(e), &v1.Entity{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
}

// TestConciergePoliciesWithoutWebhooks: with the webhook configuration
// deleted, the admission policies alone refuse the Concierge role outside the
// platform entity, and its grant by an Administrator of the platform entity;
// a platform administrator and a Concierge may grant it.
func TestConciergePoliciesWithoutWebhooks(t *testing.T) {
	g := NewWithT(t)
	applyPlatformRoles(g)
	_, nsA := newEntity(t, g)
	nsP := platformNamespace(t, g)
	withoutWebhooks(t, g)

	// Outside the platform entity, for the cluster administrator too.
	err := k8s.Create(ctx(), withRole(newUser(nsA, "self-made-concierge", false), v1.RoleConcierge))
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.role"))
	g.Expect(err.Error()).To(ContainSubstring("platform entity " + platformEntity))
	dave := newUser(nsA, "dave", false)
	g.Expect(k8s.Create(ctx(), dave)).To(Succeed())
	err = patch(k8s, dave, `{"spec":{"role":"Concierge"}}`)
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)

	// An Administrator of the platform entity manages its users, but may not
	// grant Concierge: not by creating one, nor promoting one, nor moving a
	// Concierge to its own address.
	pam := withRole(newUser(nsP, uniqueName("pam"), false), v1.RoleAdministrator)
	g.Expect(k8s.Create(ctx(), pam)).To(Succeed())
	eventuallyAllowed(g, pam.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", nsP, ""}, true)
	g.Expect(allowed(g, pam.Spec.Email, access{"grant-concierge", v1.GroupVersion.Group, "platformusers", nsP, ""})).To(BeFalse())
	asPam := impersonate(g, pam.Spec.Email)
	g.Expect(asPam.Create(ctx(), newUser(nsP, uniqueName("new-hire"), false))).To(Succeed())
	err = asPam.Create(ctx(), withRole(newUser(nsP, uniqueName("pam-friend"), false), v1.RoleConcierge))
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("only a Concierge or a platform administrator may grant the Concierge role"))
	paul := newUser(nsP, uniqueName("paul"), false)
	g.Expect(asPam.Create(ctx(), paul)).To(Succeed())
	err = patch(asPam, paul, `{"spec":{"role":"Concierge"}}`)
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)

	// The cluster administrator may.
	carol := withRole(newUser(nsP, uniqueName("carol"), false), v1.RoleConcierge)
	g.Expect(k8s.Create(ctx(), carol)).To(Succeed())
	err = patch(asPam, carol.DeepCopy(), `{"spec":{"email":"pam.concierge@`+nsP+`.example"}}`)
	g.Expect(isPolicyDenial(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.email"))

	// A Concierge may, once the operator has bound it.
	eventuallyAllowed(g, carol.Spec.Email, access{"grant-concierge", v1.GroupVersion.Group, "platformusers", nsP, ""}, true)
	asCarol := impersonate(g, carol.Spec.Email)
	g.Expect(asCarol.Create(ctx(), withRole(newUser(nsP, uniqueName("cora"), false), v1.RoleConcierge))).To(Succeed())
	g.Expect(patch(asCarol, paul, `{"spec":{"role":"Concierge"}}`)).To(Succeed())
	// Demoting needs no grant.
	g.Expect(patch(asPam, paul, `{"spec":{"role":"User"}}`)).To(Succeed())
}
