package integration

import (
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// TestParentAdministratorsDelegate impersonates the Administrators of a
// parent and of its child: the parent's may change spec.delegations of the
// parent's own pools and nothing else of a pool, nor any pool of a child; a
// child's may change no pool; and the right comes with the first child and
// goes with the role and with the last child. It runs with the webhooks and
// without them, where RBAC and the admission policy
// visio-license-pool-delegations alone hold it.
func TestParentAdministratorsDelegate(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		g := NewWithT(t)
		applyPlatformRoles(g)
		parent, nsP := createHierarchyEntity(t, g, "parent", "")
		newPool(g, nsP, v1.DefaultLicensePool, 10, v1.EnforcementDeny)
		pa := withRole(newUser(nsP, "pa", false), v1.RoleAdministrator)
		g.Expect(k8s.Create(ctx(), pa)).To(Succeed())
		group := v1.GroupVersion.Group
		updatePools := func(ns string) access { return access{"update", group, "licensepools", ns, ""} }
		eventuallyAllowed(g, pa.Spec.Email, access{"create", group, "platformusers", nsP, ""}, true)
		g.Expect(allowed(g, pa.Spec.Email, updatePools(nsP))).To(BeFalse(), "an entity without children delegates nothing")

		child, nsC := createHierarchyEntity(t, g, "child", parent.Name)
		newPool(g, nsC, v1.DefaultLicensePool, 0, v1.EnforcementDeny)
		ca := withRole(newUser(nsC, "ca", false), v1.RoleAdministrator)
		g.Expect(k8s.Create(ctx(), ca)).To(Succeed())
		eventuallyAllowed(g, pa.Spec.Email, updatePools(nsP), true)
		eventuallyAllowed(g, ca.Spec.Email, access{"create", group, "platformusers", nsC, ""}, true)
		delegators := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: nsP, Name: "visio-entity-delegators"}}
		g.Expect(bindingSubjects(g, delegators)).To(Equal([]string{pa.Spec.Email}))
		g.Expect(delegators.RoleRef.Name).To(Equal("visio-entity-delegator"))
		for _, a := range []access{
			{"create", group, "licensepools", nsP, ""}, {"delete", group, "licensepools", nsP, ""},
			{"update", group, "licensepools/status", nsP, ""}, updatePools(nsC),
		} {
			g.Expect(allowed(g, pa.Spec.Email, a)).To(BeFalse(), "parent administrator: %s", a)
		}
		for _, a := range []access{updatePools(nsP), updatePools(nsC)} {
			g.Expect(allowed(g, ca.Spec.Email, a)).To(BeFalse(), "child administrator: %s", a)
		}

		asPA, asCA := impersonate(g, pa.Spec.Email), impersonate(g, ca.Spec.Email)
		at := &attempts{t: t, g: g, webhooks: webhooks}
		delegation := func(n int) string {
			return fmt.Sprintf(`{"spec":{"delegations":[{"entity":%q,"licenses":%d}]}}`, child.Name, n)
		}
		at.expect("parent", "delegates 4 licenses to its child", accepted, patch(asPA, pool(nsP), delegation(4)))
		waitCapacity(g, nsP, v1.DefaultLicensePool, 6)
		waitCapacity(g, nsC, v1.DefaultLicensePool, 4)
		at.expect("parent", "cuts the delegation to 2", accepted, patch(asPA, pool(nsP), delegation(2)))
		waitCapacity(g, nsC, v1.DefaultLicensePool, 2)
		waitCapacity(g, nsP, v1.DefaultLicensePool, 8)
		if webhooks {
			at.expect("parent", "delegates 11 of a Deny pool of 10", deniedByAdmission, patch(asPA, pool(nsP), delegation(11)),
				fmt.Sprintf(`has 8 available licenses; cannot delegate 9 more to %q`, child.Name))
		}

		rule := "entity administrators may change only spec.delegations of a license pool"
		at.policy("parent", "raises its own licenses", patch(asPA, pool(nsP), `{"spec":{"licenses":50}}`), "spec.licenses: "+rule)
		at.policy("parent", "raises its licenses with a delegation", patch(asPA, pool(nsP),
			fmt.Sprintf(`{"spec":{"licenses":50,"delegations":[{"entity":%q,"licenses":3}]}}`, child.Name)), "spec.licenses: "+rule)
		at.policy("parent", "grants itself licenses", patch(asPA, pool(nsP),
			`{"spec":{"grants":[{"name":"self","licenses":5,"reason":"self-granted"}]}}`), "spec.grants: "+rule)
		at.policy("parent", "switches its pool to Queue", patch(asPA, pool(nsP), `{"spec":{"enforcement":"Queue"}}`), "spec.enforcement: "+rule)
		at.policy("parent", "labels its pool", patch(asPA, pool(nsP), `{"metadata":{"labels":{"tier":"gold"}}}`), "metadata: "+rule)
		at.expect("parent", "deletes its pool", deniedByRBAC, asPA.Delete(ctx(), pool(nsP)))
		at.expect("parent", "creates a pool", deniedByRBAC, asPA.Create(ctx(), &v1.LicensePool{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsP, Name: "extra"}, Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](5)}}))
		at.expect("parent", "writes its pool's status", deniedByRBAC,
			asPA.Status().Patch(ctx(), pool(nsP), client.RawPatch("application/merge-patch+json", []byte(`{"status":{"capacity":50}}`))))
		at.expect("parent", "changes its child's pool", deniedByRBAC, patch(asPA, pool(nsC), `{"spec":{"licenses":50}}`))
		at.expect("child", "delegates from its parent's pool", deniedByRBAC, patch(asCA, pool(nsP), delegation(10)))
		at.expect("child", "raises its own pool", deniedByRBAC, patch(asCA, pool(nsC), `{"spec":{"licenses":50}}`))
		at.table()

		// Nothing refused changed anything.
		got := waitCapacity(g, nsP, v1.DefaultLicensePool, 8)
		g.Expect(*got.Spec.Licenses).To(Equal(int32(10)))
		g.Expect(got.Spec.Grants).To(BeEmpty())
		g.Expect(got.Spec.Enforcement).To(Equal(v1.EnforcementDeny))
		g.Expect(got.Labels).NotTo(HaveKey("tier"))
		g.Expect(got.Spec.Delegations).To(Equal([]v1.LicenseDelegation{{Entity: child.Name, LicensePool: v1.DefaultLicensePool, Licenses: 2}}))
		waitCapacity(g, nsC, v1.DefaultLicensePool, 2)

		// Demoted, the parent's Administrator delegates nothing; promoted
		// again, it does.
		g.Expect(patch(k8s, pa.DeepCopy(), `{"spec":{"role":"User"}}`)).To(Succeed())
		eventuallyAllowed(g, pa.Spec.Email, updatePools(nsP), false)
		g.Expect(verdictOf(patch(asPA, pool(nsP), delegation(3)))).To(Equal(deniedByRBAC))
		g.Expect(patch(k8s, pa.DeepCopy(), `{"spec":{"role":"Administrator"}}`)).To(Succeed())
		eventuallyAllowed(g, pa.Spec.Email, updatePools(nsP), true)

		// Its last child gone, the parent's binding goes.
		g.Expect(k8s.Delete(ctx(), child)).To(Succeed())
		gone(g, child)
		waitChildren(g, parent)
		gone(g, delegators)
		eventuallyAllowed(g, pa.Spec.Email, updatePools(nsP), false)
	})
}
