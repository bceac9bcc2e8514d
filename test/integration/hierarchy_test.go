package integration

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// hierarchyEntity is an unprotected Entity named after the test, with
// spec.parent set to parent (none when empty); it is not created. The test's
// cleanup deletes it.
func hierarchyEntity(t *testing.T, role, parent string) *v1.Entity {
	t.Helper()
	name := fmt.Sprintf("h%d-%s", entitySeq.Add(1), role)
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.EntitySpec{DisplayName: "Hierarchy " + name, Parent: parent, DeletionProtection: ptr.To(false)}}
	t.Cleanup(func() {
		_ = patch(k8s, e.DeepCopy(), `{"spec":{"deletionProtection":false}}`)
		_ = k8s.Delete(ctx(), e.DeepCopy())
	})
	return e
}

// createHierarchyEntity creates one and waits until it is Ready.
func createHierarchyEntity(t *testing.T, g Gomega, role, parent string) (*v1.Entity, string) {
	t.Helper()
	e := hierarchyEntity(t, role, parent)
	g.Expect(k8s.Create(ctx(), e)).To(Succeed())
	waitEntityReady(g, e)
	return e, e.NamespaceName()
}

func waitEntityReady(g Gomega, e *v1.Entity) {
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "entity %s: %v", e.Name, e.Status.Conditions)
		g.Expect(e.Status.ObservedGeneration).To(Equal(e.Generation))
	}).WithTimeout(entityTimeout).Should(Succeed())
}

// waitOutOfHierarchy waits until e is Stalled with reason (NestingTooDeep or
// ParentNotFound), Ready=False with the same reason, with a message that
// names every one of names, and a Warning event of that reason.
func waitOutOfHierarchy(g Gomega, e *v1.Entity, reason string, names ...string) {
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		stalled := meta.FindStatusCondition(e.Status.Conditions, v1.StalledCondition)
		g.Expect(stalled).NotTo(BeNil(), "entity %s: %v", e.Name, e.Status.Conditions)
		g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(stalled.Reason).To(Equal(reason))
		for _, n := range names {
			g.Expect(stalled.Message).To(ContainSubstring(fmt.Sprintf("%q", n)))
		}
		ready := meta.FindStatusCondition(e.Status.Conditions, v1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(reason))
		g.Expect(e.Status.ObservedGeneration).To(Equal(e.Generation))
		// Its own namespace and administration are kept: only the hierarchy is refused.
		g.Expect(e.Status.Namespace).To(Equal(e.NamespaceName()))
	}).WithTimeout(entityTimeout).Should(Succeed())
	g.Eventually(func() []string { return entityEventNotes(g, e.Name, reason) }).WithTimeout(entityTimeout).ShouldNot(BeEmpty())
}

// waitChildren waits until parent's status.children is want (none when empty).
func waitChildren(g Gomega, parent *v1.Entity, want ...string) {
	slices.Sort(want)
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(parent), parent)).To(Succeed())
		if len(want) == 0 {
			g.Expect(parent.Status.Children).To(BeEmpty())
			g.Expect(parent.Status.Subtree).To(BeNil())
			return
		}
		g.Expect(parent.Status.Children).To(Equal(want))
		g.Expect(parent.Status.Subtree).NotTo(BeNil())
	}).WithTimeout(entityTimeout).Should(Succeed())
}

// TestHierarchyNesting: one level only, with the webhooks (refused at
// admission, naming both entities) and without them (stored, and kept out of
// the hierarchy by the controller with NestingTooDeep or ParentNotFound).
// spec.parent never changes, in both modes (CEL).
func TestHierarchyNesting(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		g := NewWithT(t)
		// A platform entity of this test's own, so that it can be created
		// here as a child (the suite's is shared and never deleted).
		platformEntity := uniqueName("hplatform")
		withManager(t, nil, func(o *operator.Options) { o.PlatformEntity = platformEntity })
		parent, _ := createHierarchyEntity(t, g, "parent", "")
		child, _ := createHierarchyEntity(t, g, "child", parent.Name)
		waitChildren(g, parent, child.Name)
		row, cols := entityRow(g, child.Name)
		g.Expect(row).To(HaveKeyWithValue("Parent", parent.Name))
		g.Expect(cols[len(cols)-3:]).To(Equal([]string{"Ready", "Status", "Age"}))
		g.Expect(cols).To(ContainElement("Parent"))

		// A grandchild.
		grandchild := hierarchyEntity(t, "grandchild", child.Name)
		err := k8s.Create(ctx(), grandchild)
		if webhooks {
			g.Expect(err).To(HaveOccurred())
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			for _, n := range []string{grandchild.Name, child.Name, parent.Name} {
				g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf("%q", n)))
			}
			g.Expect(err.Error()).To(ContainSubstring("spec.parent"))
			t.Logf("grandchild refused at admission: %v", err)
		} else {
			g.Expect(err).NotTo(HaveOccurred(), "nothing refuses a grandchild without the webhooks")
			waitOutOfHierarchy(g, grandchild, v1.ReasonNestingTooDeep, grandchild.Name, child.Name)
			t.Logf("grandchild stored without the webhooks: %s", meta.FindStatusCondition(grandchild.Status.Conditions, v1.StalledCondition).Message)
		}
		waitChildren(g, child) // a child has no children, whoever names it
		waitChildren(g, parent, child.Name)

		// The platform entity as parent, and as child.
		underPlatform := hierarchyEntity(t, "under-platform", platformEntity)
		err = k8s.Create(ctx(), underPlatform)
		if webhooks {
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			g.Expect(err.Error()).To(SatisfyAll(ContainSubstring(fmt.Sprintf("%q", underPlatform.Name)), ContainSubstring(fmt.Sprintf("%q", platformEntity))))
		} else {
			g.Expect(err).NotTo(HaveOccurred())
			waitOutOfHierarchy(g, underPlatform, v1.ReasonNestingTooDeep, underPlatform.Name, platformEntity)
		}
		platform := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: platformEntity},
			Spec: v1.EntitySpec{DisplayName: "Platform", Parent: parent.Name, DeletionProtection: ptr.To(false)}}
		err = k8s.Create(ctx(), platform)
		if webhooks {
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			g.Expect(err.Error()).To(SatisfyAll(ContainSubstring(fmt.Sprintf("%q", platformEntity)), ContainSubstring(fmt.Sprintf("%q", parent.Name))))
		} else {
			g.Expect(err).NotTo(HaveOccurred())
			t.Cleanup(func() {
				_ = k8s.Delete(ctx(), platform)
				gone(NewWithT(t), platform)
			})
			waitOutOfHierarchy(g, platform, v1.ReasonNestingTooDeep, platformEntity, parent.Name)
		}
		waitChildren(g, parent, child.Name)

		// A parent that does not exist yet: admitted (GitOps may apply a
		// child before its parent), out of the hierarchy until it exists.
		early := hierarchyEntity(t, "early-child", "")
		late := hierarchyEntity(t, "late-parent", "")
		early.Spec.Parent = late.Name
		g.Expect(k8s.Create(ctx(), early)).To(Succeed())
		waitOutOfHierarchy(g, early, v1.ReasonParentNotFound, early.Name, late.Name)
		g.Expect(k8s.Create(ctx(), late)).To(Succeed())
		waitEntityReady(g, early)
		waitChildren(g, late, early.Name)

		// An entity that others already name as parent cannot be a child.
		named := hierarchyEntity(t, "named", "")
		claimant := hierarchyEntity(t, "claimant", named.Name)
		g.Expect(k8s.Create(ctx(), claimant)).To(Succeed())
		named.Spec.Parent = parent.Name
		err = k8s.Create(ctx(), named)
		if webhooks {
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			g.Expect(err.Error()).To(SatisfyAll(ContainSubstring(fmt.Sprintf("%q", named.Name)), ContainSubstring(fmt.Sprintf("%q", claimant.Name))))
		} else {
			g.Expect(err).NotTo(HaveOccurred())
			waitEntityReady(g, named)
			waitOutOfHierarchy(g, claimant, v1.ReasonNestingTooDeep, claimant.Name, named.Name)
			waitChildren(g, parent, child.Name, named.Name)
		}

		// spec.parent never changes: not moved, not removed, not added.
		for what, doc := range map[string]string{
			"move a child":         `{"spec":{"parent":"` + late.Name + `"}}`,
			"remove a parent":      `{"spec":{"parent":null}}`,
			"add one to an entity": `{"spec":{"parent":"` + parent.Name + `"}}`,
		} {
			target := child
			if what == "add one to an entity" {
				target = late
			}
			err := patch(k8s, target.DeepCopy(), doc)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s: %v", what, err)
			g.Expect(err.Error()).To(ContainSubstring("parent"), what)
		}
		self := hierarchyEntity(t, "self", "")
		self.Spec.Parent = self.Name
		g.Expect(k8s.Create(ctx(), self)).To(MatchError(ContainSubstring("an entity cannot be its own parent")))
	})
}

// TestHierarchySameInstant creates related entities at the same instant, in
// both orders, with and without the webhooks (one after the other, the same
// orders are in TestHierarchyNesting): a parent and its child both
// end in one hierarchy; a parent, a child and a grandchild never end as two
// levels, whatever admission and the controller saw first.
func TestHierarchySameInstant(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		for _, childFirst := range []bool{true, false} {
			t.Run(fmt.Sprintf("child-first=%v", childFirst), func(t *testing.T) {
				g := NewWithT(t)
				parent := hierarchyEntity(t, "parent", "")
				child := hierarchyEntity(t, "child", parent.Name)
				errs := atOnce(childFirst, func() error { return k8s.Create(ctx(), child) }, func() error { return k8s.Create(ctx(), parent) })
				g.Expect(errs).To(HaveEach(Succeed()))
				waitEntityReady(g, parent)
				waitEntityReady(g, child)
				waitChildren(g, parent, child.Name)

				root, _ := createHierarchyEntity(t, g, "root", "")
				middle := hierarchyEntity(t, "middle", root.Name)
				leaf := hierarchyEntity(t, "leaf", middle.Name)
				errs = atOnce(childFirst, func() error { return k8s.Create(ctx(), leaf) }, func() error { return k8s.Create(ctx(), middle) })
				leafErr, middleErr := errs[0], errs[1]
				t.Logf("leaf: %v; middle: %v", leafErr, middleErr)
				if !webhooks {
					g.Expect(errs).To(HaveEach(Succeed()))
				}
				for _, err := range errs {
					if err != nil {
						g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "only a refusal of the nesting: %v", err)
					}
				}
				g.Expect(leafErr == nil || middleErr == nil).To(BeTrue(), "one of the two is admitted")
				switch {
				case middleErr != nil:
					// The leaf was stored first, so the middle could not
					// become a child: the leaf waits for a parent that does
					// not exist.
					waitOutOfHierarchy(g, leaf, v1.ReasonParentNotFound, leaf.Name, middle.Name)
					waitChildren(g, root)
				default:
					waitEntityReady(g, middle)
					waitChildren(g, root, middle.Name)
					waitChildren(g, middle)
					if leafErr == nil {
						waitOutOfHierarchy(g, leaf, v1.ReasonNestingTooDeep, leaf.Name, middle.Name)
					}
				}
			})
		}
	})
}

// atOnce runs two calls at the same instant, the first one given a head start
// of a goroutine when first is true (else the second), and returns their
// errors in the order given.
func atOnce(first bool, a, b func() error) []error {
	errs := make([]error, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	calls := []func() error{a, b}
	order := []int{0, 1}
	if !first {
		order = []int{1, 0}
	}
	for _, i := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = calls[i]()
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// hierarchyAccesses are what an entity's Administrators may or may not do in
// its namespace (and to its Entity): the parent's Administrators must get
// exactly the same answers there.
func hierarchyAccesses(e *v1.Entity, ns string) []access {
	group := v1.GroupVersion.Group
	return []access{
		{"create", group, "platformusers", ns, ""},
		{"delete", group, "platformusers", ns, ""},
		{"list", group, "platformusers", ns, ""},
		{"update", group, "platformusers/status", ns, ""},
		{"get", group, "licensepools", ns, ""},
		{"update", group, "licensepools", ns, ""},
		{"create", group, "licenserequests", ns, ""},
		{"update", group, "licenserequests/status", ns, ""},
		{"get", group, "vmrs", ns, ""},
		{"create", group, "vmrs", ns, ""},
		{"get", "", "secrets", ns, ""},
		{"list", "", "events", ns, ""},
		{"create", "rbac.authorization.k8s.io", "rolebindings", ns, ""},
		{"get", group, "entities", "", e.Name},
		{"update", group, "entities", "", e.Name},
		{"update", group, "entities/status", "", e.Name},
	}
}

// TestHierarchyRBAC impersonates a parent's Administrator and its children's,
// asking the authorizer (SubjectAccessReview) and sending real requests: the
// parent's Administrator administers every child as the child's own do,
// through a new child, a demotion, a promotion, a deleted child and a deleted
// parent; a child's Administrator gets nothing in the parent or in a sibling.
func TestHierarchyRBAC(t *testing.T) {
	g := NewWithT(t)
	applyPlatformRoles(g)
	parent, nsP := createHierarchyEntity(t, g, "parent", "")
	first, ns1 := createHierarchyEntity(t, g, "first", parent.Name)
	second, ns2 := createHierarchyEntity(t, g, "second", parent.Name)
	for _, ns := range []string{nsP, ns1, ns2} {
		newPool(g, ns, v1.DefaultLicensePool, 5, v1.EnforcementQueue)
	}
	pa := withRole(newUser(nsP, "pa", false), v1.RoleAdministrator)
	ca := withRole(newUser(ns1, "ca", false), v1.RoleAdministrator)
	sa := withRole(newUser(ns2, "sa", false), v1.RoleAdministrator)
	for _, u := range []*v1.PlatformUser{pa, ca, sa} {
		g.Expect(k8s.Create(ctx(), u)).To(Succeed())
	}
	manage := func(ns string) access { return access{"create", v1.GroupVersion.Group, "platformusers", ns, ""} }
	eventuallyAllowed(g, ca.Spec.Email, manage(ns1), true)
	eventuallyAllowed(g, sa.Spec.Email, manage(ns2), true)
	eventuallyAllowed(g, pa.Spec.Email, manage(nsP), true)
	eventuallyAllowed(g, pa.Spec.Email, manage(ns1), true)
	eventuallyAllowed(g, pa.Spec.Email, manage(ns2), true)

	// Exactly what the child's own Administrator gets, in the child.
	for _, c := range []struct {
		e     *v1.Entity
		ns    string
		owner string
	}{{first, ns1, ca.Spec.Email}, {second, ns2, sa.Spec.Email}} {
		for _, a := range hierarchyAccesses(c.e, c.ns) {
			g.Expect(allowed(g, pa.Spec.Email, a)).To(Equal(allowed(g, c.owner, a)), "parent administrator vs %s: %s", c.owner, a)
		}
	}
	parentBinding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns1, Name: "visio-parent-administrators"}}
	g.Expect(bindingSubjects(g, parentBinding)).To(Equal([]string{pa.Spec.Email}))
	g.Expect(metav1.IsControlledBy(parentBinding, first)).To(BeTrue(), "the binding goes with the child")
	g.Expect(bindingSubjects(g, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns1, Name: "visio-entity-administrators"}})).
		To(Equal([]string{ca.Spec.Email}), "the child's own binding names its own administrators only")

	// A child's Administrator: nothing in the parent, nothing in a sibling.
	for _, a := range append(hierarchyAccesses(parent, nsP), hierarchyAccesses(second, ns2)...) {
		g.Expect(allowed(g, ca.Spec.Email, a)).To(BeFalse(), "child administrator: %s", a)
	}
	for _, a := range append(hierarchyAccesses(parent, nsP), hierarchyAccesses(first, ns1)...) {
		g.Expect(allowed(g, sa.Spec.Email, a)).To(BeFalse(), "sibling administrator: %s", a)
	}

	// Real requests.
	asPA, asCA := impersonate(g, pa.Spec.Email), impersonate(g, ca.Spec.Email)
	hired := newUser(ns1, "hired-by-parent", false)
	g.Expect(asPA.Create(ctx(), hired)).To(Succeed(), "the parent's administrator manages a child's users")
	g.Expect(patch(asPA, hired.DeepCopy(), `{"spec":{"givenName":"Renamed"}}`)).To(Succeed())
	users := &v1.PlatformUserList{}
	g.Expect(asPA.List(ctx(), users, client.InNamespace(ns2))).To(Succeed())
	g.Expect(asPA.Get(ctx(), client.ObjectKeyFromObject(first), &v1.Entity{})).To(Succeed(), "and reads the child Entity")
	g.Expect(verdictOf(patch(asPA, pool(ns1), `{"spec":{"licenses":50}}`))).To(Equal(deniedByRBAC), "no more than the child's own: its pool is read-only")
	g.Expect(verdictOf(asCA.Create(ctx(), newUser(nsP, "from-child", false)))).To(Equal(deniedByRBAC))
	g.Expect(verdictOf(asCA.List(ctx(), &v1.PlatformUserList{}, client.InNamespace(nsP)))).To(Equal(deniedByRBAC))
	g.Expect(verdictOf(asCA.Create(ctx(), newUser(ns2, "from-sibling", false)))).To(Equal(deniedByRBAC))
	g.Expect(verdictOf(asCA.Get(ctx(), client.ObjectKeyFromObject(parent), &v1.Entity{}))).To(Equal(deniedByRBAC))
	g.Expect(verdictOf(asCA.Get(ctx(), client.ObjectKeyFromObject(second), &v1.Entity{}))).To(Equal(deniedByRBAC))

	// A new child: the parent's Administrator administers it at once.
	third, ns3 := createHierarchyEntity(t, g, "third", parent.Name)
	eventuallyAllowed(g, pa.Spec.Email, manage(ns3), true)
	eventuallyAllowed(g, pa.Spec.Email, access{"get", v1.GroupVersion.Group, "entities", "", third.Name}, true)
	waitChildren(g, parent, first.Name, second.Name, third.Name)

	// Demotion withdraws every child at once; promotion gives them back.
	g.Expect(patch(k8s, pa.DeepCopy(), `{"spec":{"role":"User"}}`)).To(Succeed())
	for _, ns := range []string{nsP, ns1, ns2, ns3} {
		eventuallyAllowed(g, pa.Spec.Email, manage(ns), false)
	}
	eventuallyAllowed(g, pa.Spec.Email, access{"get", v1.GroupVersion.Group, "entities", "", first.Name}, false)
	g.Expect(verdictOf(asPA.Create(ctx(), newUser(ns1, "after-demotion", false)))).To(Equal(deniedByRBAC))
	g.Expect(bindingSubjects(g, parentBinding)).To(BeEmpty())
	g.Expect(patch(k8s, pa.DeepCopy(), `{"spec":{"role":"Administrator"}}`)).To(Succeed())
	eventuallyAllowed(g, pa.Spec.Email, manage(ns2), true)

	// A deleted child: nothing of it is left to the parent's Administrator.
	g.Expect(k8s.Delete(ctx(), second)).To(Succeed())
	gone(g, second)
	gone(g, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns2}})
	eventuallyAllowed(g, pa.Spec.Email, manage(ns2), false)
	eventuallyAllowed(g, pa.Spec.Email, access{"get", v1.GroupVersion.Group, "entities", "", second.Name}, false)
	g.Expect(verdictOf(asPA.List(ctx(), &v1.PlatformUserList{}, client.InNamespace(ns2)))).To(Equal(deniedByRBAC))
	gone(g, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "visio-entity-" + second.Name + "-parent-reader"}})
	waitChildren(g, parent, first.Name, third.Name)
	g.Expect(allowed(g, pa.Spec.Email, manage(ns1))).To(BeTrue(), "the other children stay")

	// A deleted parent: its children stay, out of the hierarchy, and its
	// Administrators keep nothing in them.
	g.Expect(k8s.Delete(ctx(), parent)).To(Succeed())
	gone(g, parent)
	for _, c := range []*v1.Entity{first, third} {
		waitOutOfHierarchy(g, c, v1.ReasonParentNotFound, c.Name, parent.Name)
		gone(g, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: c.NamespaceName(), Name: "visio-parent-administrators"}})
		gone(g, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "visio-entity-" + c.Name + "-parent-reader"}})
	}
	eventuallyAllowed(g, pa.Spec.Email, manage(ns1), false)
	g.Expect(allowed(g, ca.Spec.Email, manage(ns1))).To(BeTrue(), "the child's own administrator stays")
}

// TestHierarchyDeletionProtection: a protected parent with children is not
// deleted, and the refusal (webhooks) or the Stalled condition (without
// them) names the children; once they are gone, it is.
func TestHierarchyDeletionProtection(t *testing.T) {
	inBothModes(t, func(t *testing.T, webhooks bool) {
		g := NewWithT(t)
		parent, nsP := protectedEntity(t, g, "hparent")
		a, _ := createHierarchyEntity(t, g, "a", parent.Name)
		b, _ := createHierarchyEntity(t, g, "b", parent.Name)
		waitChildren(g, parent, a.Name, b.Name)
		names := []string{a.Name, b.Name}
		slices.Sort(names) // as the messages list them

		err := k8s.Delete(ctx(), parent)
		if webhooks {
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
			g.Expect(err.Error()).To(SatisfyAll(ContainSubstring(v1.ReasonDeletionProtected),
				ContainSubstring(fmt.Sprintf("2 sub-entities %q and %q", names[0], names[1])), ContainSubstring("deletionProtection")))
			t.Logf("refused: %v", err)
		} else {
			g.Expect(err).NotTo(HaveOccurred(), "nothing refuses the deletion without the webhooks")
			g.Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(parent), parent)).To(Succeed())
				g.Expect(parent.DeletionTimestamp).NotTo(BeNil())
				stalled := meta.FindStatusCondition(parent.Status.Conditions, v1.StalledCondition)
				g.Expect(stalled).NotTo(BeNil())
				g.Expect(stalled.Reason).To(Equal(v1.ReasonDeletionProtected))
				g.Expect(stalled.Message).To(Equal(fmt.Sprintf(
					"deletion protected: 2 sub-entities %q and %q name it as their parent; delete them or set spec.deletionProtection to false", names[0], names[1])))
			}).WithTimeout(entityTimeout).Should(Succeed())
			g.Consistently(func(g Gomega) {
				ns := &corev1.Namespace{}
				g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: nsP}, ns)).To(Succeed())
				g.Expect(ns.DeletionTimestamp).To(BeNil())
			}).WithTimeout(3 * time.Second).Should(Succeed())
			// The children are still in its hierarchy while it waits.
			waitEntityReady(g, a)
		}

		g.Expect(k8s.Delete(ctx(), a)).To(Succeed())
		gone(g, a)
		if webhooks {
			err := k8s.Delete(ctx(), parent)
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
			g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf("1 sub-entity %q", b.Name)))
		}
		g.Expect(k8s.Delete(ctx(), b)).To(Succeed())
		gone(g, b)
		if webhooks {
			g.Expect(k8s.Delete(ctx(), parent)).To(Succeed())
		}
		gone(g, parent)
		gone(g, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsP}})
	})
}

// TestHierarchySubtree: a parent's status.subtree is its own counts plus its
// children's, and follows a change in a child.
func TestHierarchySubtree(t *testing.T) {
	g := NewWithT(t)
	parent, nsP := createHierarchyEntity(t, g, "parent", "")
	a, nsA := createHierarchyEntity(t, g, "a", parent.Name)
	b, nsB := createHierarchyEntity(t, g, "b", parent.Name)
	newPool(g, nsP, v1.DefaultLicensePool, 10, v1.EnforcementDeny)
	newPool(g, nsA, v1.DefaultLicensePool, 3, v1.EnforcementQueue)
	newPool(g, nsB, v1.DefaultLicensePool, 2, v1.EnforcementDeny)
	for i, ns := range []string{nsP, nsP, nsA, nsA, nsA, nsA, nsB} {
		g.Expect(k8s.Create(ctx(), newUser(ns, fmt.Sprintf("u%d", i), true))).To(Succeed())
	}
	g.Expect(k8s.Create(ctx(), withRole(newUser(nsB, "boss", false), v1.RoleAdministrator))).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(parent), parent)).To(Succeed())
		g.Expect(parent.Status.Children).To(Equal([]string{a.Name, b.Name}))
		s := parent.Status.Subtree
		g.Expect(s).NotTo(BeNil())
		g.Expect(s.Licenses).To(Equal(v1.LicenseCounts{Capacity: 15, Used: 6, Available: 9, Pending: 1}))
		g.Expect(s.Users.Total).To(Equal(int32(8)))
		g.Expect(s.Users.Active).To(Equal(int32(7)))
		g.Expect(s.Users.Licensed).To(Equal(int32(6)))
		g.Expect(s.Users.ByRole).To(HaveKeyWithValue(v1.RoleUser, int32(7)))
		g.Expect(s.Users.ByRole).To(HaveKeyWithValue(v1.RoleAdministrator, int32(1)))
		// The parent's own counts are its own.
		g.Expect(parent.Status.Licenses.Capacity).To(Equal(int32(10)))
		g.Expect(parent.Status.Users.Total).To(Equal(int32(2)))
		g.Expect(meta.FindStatusCondition(parent.Status.Conditions, v1.ReadyCondition).Message).To(ContainSubstring("2 sub-entities"))
	}).WithTimeout(entityTimeout).Should(Succeed())
	g.Expect(patch(k8s, pool(nsA), `{"spec":{"licenses":4}}`)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(parent), parent)).To(Succeed())
		g.Expect(parent.Status.Subtree.Licenses).To(Equal(v1.LicenseCounts{Capacity: 16, Used: 7, Available: 9}))
	}).WithTimeout(entityTimeout).Should(Succeed())
	// A child has no children and no subtree.
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(a), a)).To(Succeed())
	g.Expect(a.Status.Children).To(BeEmpty())
	g.Expect(a.Status.Subtree).To(BeNil())
	g.Expect(strings.Join(parent.Status.Children, ",")).To(Equal(a.Name + "," + b.Name))
}

// TestHierarchyQuiet (guarantee 6): a parent and its children watch each
// other, and once settled they write nothing, also after a restart whose
// resync reconciles every one of them.
func TestHierarchyQuiet(t *testing.T) {
	g := NewWithT(t)
	waitNoEntityDeleting(g)
	counter := &writeCounter{}
	restart := withManager(t, counter, func(*operator.Options) {})
	parent, nsP := createHierarchyEntity(t, g, "parent", "")
	a, nsA := createHierarchyEntity(t, g, "a", parent.Name)
	_, nsB := createHierarchyEntity(t, g, "b", parent.Name)
	for _, ns := range []string{nsP, nsA, nsB} {
		newPool(g, ns, v1.DefaultLicensePool, 3, v1.EnforcementQueue)
		g.Expect(k8s.Create(ctx(), withRole(newUser(ns, "admin", false), v1.RoleAdministrator))).To(Succeed())
		g.Expect(k8s.Create(ctx(), newUser(ns, "user", true))).To(Succeed())
	}
	settled := func() {
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(parent), parent)).To(Succeed())
			g.Expect(parent.Status.Subtree).NotTo(BeNil())
			g.Expect(parent.Status.Subtree.Users.Total).To(Equal(int32(6)))
			g.Expect(parent.Status.Subtree.Licenses.Used).To(Equal(int32(3)))
			g.Expect(bindingSubjects(g, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "visio-parent-administrators"}})).
				To(Equal([]string{"admin@" + nsP + ".example"}))
		}).WithTimeout(entityTimeout).Should(Succeed())
		waitEntityReady(g, a)
	}
	quiet := func(phase string) {
		before := counter.snapshot()
		time.Sleep(quietWindow)
		delta := map[string]int64{}
		for k, v := range counter.snapshot() {
			if d := v - before[k]; d != 0 {
				delta[k] = d
			}
		}
		t.Logf("%s (%s): manager writes %v", phase, quietWindow, delta)
		g.Expect(delta).To(BeEmpty(), "%s: the manager wrote", phase)
	}
	settled()
	// Past the interval at which counts are written at most once.
	time.Sleep(2 * time.Second)
	quiet("settled")
	restart()
	settled()
	time.Sleep(2 * time.Second)
	quiet("after a restart and its full resync")
}
