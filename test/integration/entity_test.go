package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// entityTimeout bounds waits for the Entity controller, the namespace
// controller and the garbage collector on a shared, busy machine.
const entityTimeout = 90 * time.Second

// entityEvents lists the events of one reason recorded on an Entity (cluster
// scoped, so its events may be in any namespace).
func entityEvents(g Gomega, name, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx(), list)).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "Entity" && e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// entityRow is the row `kubectl get ent <name>` prints: the server-side table
// of the CRD's printer columns, by column name (priority 0 only, as kubectl
// shows without -o wide), and the names of those columns in order.
func entityRow(g Gomega, name string) (map[string]string, []string) {
	c := rest.CopyConfig(cfg)
	c.APIPath, c.GroupVersion = "/apis", &v1.GroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := rc.Get().Resource("entities").Name(name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx())
	g.Expect(err).NotTo(HaveOccurred())
	table := &metav1.Table{}
	g.Expect(json.Unmarshal(raw, table)).To(Succeed())
	g.Expect(table.Rows).To(HaveLen(1))
	row, cols := map[string]string{}, []string{}
	for i, col := range table.ColumnDefinitions {
		if col.Priority == 0 {
			row[col.Name] = fmt.Sprint(table.Rows[0].Cells[i])
			cols = append(cols, col.Name)
		}
	}
	return row, cols
}

// gone waits until obj no longer exists.
func gone(g Gomega, obj client.Object) {
	g.Eventually(func() error {
		return k8s.Get(ctx(), client.ObjectKeyFromObject(obj), obj)
	}).WithTimeout(entityTimeout).Should(Satisfy(apierrors.IsNotFound), "%T %s still exists", obj, obj.GetName())
}

// TestEntityNamespaceConflict gives an Entity a namespace that exists and was
// not created for it, even one that carries its label: the Entity stalls with
// reason NamespaceConflict and a Warning event, the namespace is not adopted
// (no owner, no label, nothing admitted into it), and deleting the Entity
// leaves the namespace alone.
func TestEntityNamespaceConflict(t *testing.T) {
	g := NewWithT(t)
	seq := entitySeq.Add(1)
	name := fmt.Sprintf("conflict-%d", seq)
	taken := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("taken-%d", seq),
		Labels: map[string]string{v1.EntityLabel: name, "team": "someone-else"}}}
	g.Expect(k8s.Create(ctx(), taken)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), taken) })
	labels := taken.Labels // as the API server stored them

	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.EntitySpec{DisplayName: "Conflict", Namespace: taken.Name, DeletionProtection: ptr.To(false)}}
	g.Expect(k8s.Create(ctx(), e)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), e) })

	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		stalled := meta.FindStatusCondition(e.Status.Conditions, v1.StalledCondition)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(stalled.Reason).To(Equal(v1.ReasonNamespaceConflict))
		g.Expect(stalled.Message).To(ContainSubstring(taken.Name))
		ready := meta.FindStatusCondition(e.Status.Conditions, v1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(v1.ReasonNamespaceConflict))
		g.Expect(meta.FindStatusCondition(e.Status.Conditions, v1.ReconcilingCondition)).To(BeNil())
		g.Expect(e.Status.ObservedGeneration).To(Equal(e.Generation))
	}).WithTimeout(entityTimeout).Should(Succeed())
	g.Eventually(func() []eventsv1.Event { return entityEvents(g, name, v1.ReasonNamespaceConflict) }).
		WithTimeout(entityTimeout).Should(ContainElement(HaveField("Type", corev1.EventTypeWarning)))
	row, _ := entityRow(g, name)
	g.Expect(row).To(HaveKeyWithValue("Ready", "False"))
	g.Expect(row["Status"]).To(ContainSubstring("already exists"))

	// Not adopted.
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(taken), taken)).To(Succeed())
	g.Expect(taken.OwnerReferences).To(BeEmpty())
	g.Expect(taken.Labels).To(Equal(labels))
	g.Expect(k8s.Create(ctx(), newUser(taken.Name, "squatter", false))).To(MatchError(ContainSubstring("belongs to no entity")))
	g.Expect(allowed(g, "nobody@example.org", access{"create", v1.GroupVersion.Group, "platformusers", taken.Name, ""})).To(BeFalse())

	// Deleting the Entity does not delete what was never its own.
	g.Expect(k8s.Delete(ctx(), e)).To(Succeed())
	gone(g, e)
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(taken), taken)).To(Succeed())
	g.Expect(taken.DeletionTimestamp).To(BeNil())
}

// protectedEntity creates an Entity with deletion protection left to its
// default, waits until it is Ready and returns it with its namespace. Its
// cleanup lifts the protection first.
func protectedEntity(t *testing.T, g Gomega, prefix string) (*v1.Entity, string) {
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, entitySeq.Add(1))},
		Spec: v1.EntitySpec{DisplayName: "Protected " + prefix}}
	g.Expect(k8s.Create(ctx(), e)).To(Succeed())
	g.Expect(e.Spec.DeletionProtection).To(Equal(ptr.To(true)), "deletionProtection defaults to true")
	t.Cleanup(func() {
		_ = patch(k8s, e, `{"spec":{"deletionProtection":false}}`)
		_ = k8s.Delete(ctx(), e)
	})
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	}).WithTimeout(entityTimeout).Should(Succeed())
	return e, e.NamespaceName()
}

// waitRoomReady waits until a room is Ready (provisioned, finalizer in place).
func waitRoomReady(g Gomega, r *v1.VMR) {
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(r), r)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "%v", r.Status.Conditions)
		g.Expect(r.Finalizers).To(ContainElement(v1.VMRFinalizer))
	}).WithTimeout(entityTimeout).Should(Succeed())
}

// TestEntityDeletionProtected: a protected Entity is not deleted while users
// or rooms remain, and the refusal counts them; once they are gone, it is.
func TestEntityDeletionProtected(t *testing.T) {
	g := NewWithT(t)
	e, ns := protectedEntity(t, g, "protected")
	newPool(g, ns, v1.DefaultLicensePool, 5, v1.EnforcementDeny)
	ana, ben := newUser(ns, "ana", true), newUser(ns, "ben", false)
	g.Expect(k8s.Create(ctx(), ana)).To(Succeed())
	g.Expect(k8s.Create(ctx(), ben)).To(Succeed())
	hall := room(ns, "hall")
	g.Expect(k8s.Create(ctx(), hall)).To(Succeed())
	waitRoomReady(g, hall)

	refused := func(remains string) {
		err := k8s.Delete(ctx(), e)
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "deleting a protected entity: %v", err)
		g.Expect(err.Error()).To(ContainSubstring("still has " + remains + " in namespace"))
		g.Expect(err.Error()).To(ContainSubstring("deletionProtection"))
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(e.DeletionTimestamp).To(BeNil())
	}
	refused("2 PlatformUsers and 1 VMR")
	g.Expect(k8s.Delete(ctx(), ben)).To(Succeed())
	refused("1 PlatformUser and 1 VMR")
	g.Expect(k8s.Delete(ctx(), ana)).To(Succeed())
	refused("1 VMR")

	// The room goes once the backend room is removed; then nothing is left and
	// the protected Entity may go, its namespace and pool with it.
	g.Expect(k8s.Delete(ctx(), hall)).To(Succeed())
	gone(g, hall)
	g.Expect(k8s.Delete(ctx(), e)).To(Succeed())
	gone(g, e)
	gone(g, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
}

// TestEntityDeletionUnprotected: lifting the protection lets an Entity with
// users, pools and rooms be deleted, and the deletion removes its namespace
// and everything in it (the rooms' finalizers included, so their backend
// rooms) and its cluster-wide RBAC.
func TestEntityDeletionUnprotected(t *testing.T) {
	g := NewWithT(t)
	e, ns := protectedEntity(t, g, "unprotected")
	newPool(g, ns, v1.DefaultLicensePool, 5, v1.EnforcementDeny)
	admin := withRole(newUser(ns, "ada", false), v1.RoleAdministrator)
	for _, u := range []*v1.PlatformUser{admin, newUser(ns, "ana", true), newUser(ns, "ben", true)} {
		g.Expect(k8s.Create(ctx(), u)).To(Succeed())
	}
	rooms := []*v1.VMR{room(ns, "hall"), room(ns, "annex")}
	for _, r := range rooms {
		g.Expect(k8s.Create(ctx(), r)).To(Succeed())
	}
	for _, r := range rooms {
		waitRoomReady(g, r)
	}
	reader := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "visio-entity-" + e.Name + "-reader"}}
	readerRole := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: reader.Name}}
	g.Eventually(func() []string { return bindingSubjects(g, reader) }).WithTimeout(entityTimeout).Should(Equal([]string{admin.Spec.Email}))
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(readerRole), readerRole)).To(Succeed())

	err := k8s.Delete(ctx(), e)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("3 PlatformUsers and 2 VMRs"))

	g.Expect(patch(k8s, e, `{"spec":{"deletionProtection":false}}`)).To(Succeed())
	g.Expect(k8s.Delete(ctx(), e)).To(Succeed())
	gone(g, e)
	gone(g, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	for _, r := range rooms {
		gone(g, r)
	}
	gone(g, reader)
	gone(g, readerRole)
	g.Expect(allowed(g, admin.Spec.Email, access{"get", v1.GroupVersion.Group, "entities", "", e.Name})).To(BeFalse())
}

// person is what TestEntityRollup expects of one user.
type person struct {
	role   v1.PlatformUserRole
	active bool
	pool   string
}

// TestEntityRollup changes users, pools and rooms of an entity in bursts and
// checks that status.licenses, status.users (per role too) and status.vmrs
// come to match, that `kubectl get ent` shows them, and that running out of
// licenses is a Warning event on the Entity.
func TestEntityRollup(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, 20, v1.EnforcementQueue)
	newPool(g, ns, "extra", 2, v1.EnforcementDeny)

	want := map[string]*person{}
	roles := []v1.PlatformUserRole{v1.RoleUser, v1.RoleDelegatedOrganizer, v1.RoleAdministrator}
	for i := range 30 {
		want[fmt.Sprintf("u%02d", i)] = &person{role: roles[i%3], active: true, pool: v1.DefaultLicensePool}
	}
	want["x0"] = &person{role: v1.RoleUser, active: true, pool: "extra"}
	want["x1"] = &person{role: v1.RoleAdministrator, active: true, pool: "extra"}
	want["k0"] = &person{role: v1.RoleAdministrator, active: false, pool: "extra"} // Concierges live in the platform entity
	rooms := []string{"r0", "r1", "r2", "r3", "r4"}

	// A burst of creations...
	names := sortedKeys(want)
	concurrently(g, len(names)+len(rooms), func(i int) error {
		if i >= len(names) {
			return k8s.Create(ctx(), room(ns, rooms[i-len(names)]))
		}
		p := want[names[i]]
		u := withRole(newUser(ns, names[i], p.active), p.role)
		u.Spec.LicensePool = p.pool
		return k8s.Create(ctx(), u)
	})

	// ...then one of changes: deactivations, deletions, role changes, rooms deleted.
	var changes []func() error
	user := func(name string) *v1.PlatformUser { return newUser(ns, name, false) }
	for _, n := range []string{"u00", "u01", "u02", "u03", "u04"} {
		changes = append(changes, func() error { return patch(k8s, user(n), `{"spec":{"active":false}}`) })
		want[n].active = false
	}
	for _, n := range []string{"u05", "u06", "u07"} {
		changes = append(changes, func() error { return k8s.Delete(ctx(), user(n)) })
		delete(want, n)
	}
	for n, role := range map[string]v1.PlatformUserRole{"u08": v1.RoleAdministrator, "u09": v1.RoleAdministrator, "u10": v1.RoleUser, "u11": v1.RoleDelegatedOrganizer} {
		changes = append(changes, func() error { return patch(k8s, user(n), `{"spec":{"role":"`+string(role)+`"}}`) })
		want[n].role = role
	}
	for _, n := range []string{"r3", "r4"} {
		changes = append(changes, func() error { return k8s.Delete(ctx(), room(ns, n)) })
	}
	concurrently(g, len(changes), func(i int) error { return changes[i]() })

	expect := rollupOf(want, map[string]int32{v1.DefaultLicensePool: 20, "extra": 2})
	g.Expect(expect.lic).To(Equal(v1.LicenseCounts{Capacity: 22, Used: 22, Available: 0, Pending: 2}), "the scenario itself")
	g.Expect(expect.users.Total).To(Equal(int32(30)), "the scenario itself")
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(e.Status.Licenses).To(Equal(expect.lic))
		g.Expect(e.Status.Users).To(Equal(expect.users))
		g.Expect(e.Status.VMRs).To(Equal(v1.VMRCounts{Total: 3, Ready: 3}))
		g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	}).WithTimeout(entityTimeout).Should(Succeed())

	// `kubectl get ent` at a glance.
	row, cols := entityRow(g, e.Name)
	g.Expect(cols).To(Equal([]string{"Name", "Namespace", "Parent", "Used", "Capacity", "Users", "VMRs", "Ready", "Status", "Age"}))
	g.Expect(row).To(HaveKeyWithValue("Namespace", ns))
	g.Expect(row).To(HaveKeyWithValue("Parent", "<nil>"), "an entity without a parent shows none")
	g.Expect(row).To(HaveKeyWithValue("Used", "22"))
	g.Expect(row).To(HaveKeyWithValue("Capacity", "22"))
	g.Expect(row).To(HaveKeyWithValue("Users", "30"))
	g.Expect(row).To(HaveKeyWithValue("VMRs", "3"))
	g.Expect(row).To(HaveKeyWithValue("Ready", "True"))
	g.Expect(row).To(HaveKeyWithValue("Status", "22/22 licenses used, 30 users, 3 rooms, 2 users waiting for a license"))

	// Running out of licenses is something a concierge must notice on the Entity.
	exhausted := SatisfyAll(HaveField("Type", corev1.EventTypeWarning), HaveField("Note", ContainSubstring("no license left")))
	g.Eventually(func() []eventsv1.Event { return entityEvents(g, e.Name, v1.ReasonLicensePoolExhausted) }).
		WithTimeout(entityTimeout).Should(ContainElement(exhausted))

	// More licenses: the waiting users get theirs and the rollup follows.
	g.Expect(patch(k8s, pool(ns), `{"spec":{"licenses":30}}`)).To(Succeed())
	expect = rollupOf(want, map[string]int32{v1.DefaultLicensePool: 30, "extra": 2})
	g.Expect(expect.lic).To(Equal(v1.LicenseCounts{Capacity: 32, Used: 24, Available: 8, Pending: 0}))
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(e.Status.Licenses).To(Equal(expect.lic))
		g.Expect(e.Status.Users).To(Equal(expect.users))
		row, _ := entityRow(g, e.Name)
		g.Expect(row).To(HaveKeyWithValue("Used", "24"))
		g.Expect(row).To(HaveKeyWithValue("Capacity", "32"))
		g.Expect(row).To(HaveKeyWithValue("Status", "24/32 licenses used, 30 users, 3 rooms"))
	}).WithTimeout(entityTimeout).Should(Succeed())
}

// rollup is the status an entity's people and pools should produce.
type rollup struct {
	lic   v1.LicenseCounts
	users v1.UserCounts
}

// rollupOf computes, independently of the operator, what the entity status
// should say: each pool licenses its active users up to its capacity.
func rollupOf(people map[string]*person, capacity map[string]int32) rollup {
	var r rollup
	activeIn := map[string]int32{}
	r.users.ByRole = map[v1.PlatformUserRole]int32{}
	for _, p := range people {
		r.users.Total++
		r.users.ByRole[p.role]++
		if p.active {
			r.users.Active++
			activeIn[p.pool]++
		}
	}
	for pool, c := range capacity {
		used := min(activeIn[pool], c)
		r.lic.Capacity += c
		r.lic.Used += used
		r.lic.Available += c - used
		r.lic.Pending += activeIn[pool] - used
	}
	r.users.Licensed = r.lic.Used
	return r
}

// concurrently runs n calls of f at once and expects them all to succeed.
func concurrently(g Gomega, n int, f func(i int) error) {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		g.Expect(err).NotTo(HaveOccurred(), "call %d", i)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestEntityNamespaceLifecycle: a NamespaceConflict says what to do and
// clears by itself once the squatting namespace is deleted; an Entity
// recreated while its predecessor's namespace is still terminating reports
// Reconciling (NamespaceTerminating), not Stalled, and gets a namespace of its
// own once the old one is gone.
func TestEntityNamespaceLifecycle(t *testing.T) {
	g := NewWithT(t)
	seq := entitySeq.Add(1)
	conditionOf := func(e *v1.Entity, typ string) func(g Gomega) *metav1.Condition {
		return func(g Gomega) *metav1.Condition {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
			return meta.FindStatusCondition(e.Status.Conditions, typ)
		}
	}

	// A squatter goes: the Entity proceeds with no edit.
	squat := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("entity-squatted-%d", seq)}}
	g.Expect(k8s.Create(ctx(), squat)).To(Succeed())
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("squatted-%d", seq)},
		Spec: v1.EntitySpec{DisplayName: "Squatted", DeletionProtection: ptr.To(false)}}
	g.Expect(k8s.Create(ctx(), e)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), e) })
	g.Eventually(conditionOf(e, v1.StalledCondition)).WithTimeout(entityTimeout).Should(And(
		HaveField("Reason", v1.ReasonNamespaceConflict),
		HaveField("Message", ContainSubstring("kubectl delete namespace "+squat.Name)),
		HaveField("Message", ContainSubstring("set spec.namespace to a free name"))))
	g.Expect(e.Status.Namespace).To(BeEmpty(), "a namespace not in use is not recorded, so spec.namespace can still be set")
	g.Expect(k8s.Delete(ctx(), squat)).To(Succeed())
	g.Eventually(conditionOf(e, v1.ReadyCondition)).WithTimeout(entityTimeout).Should(HaveField("Status", metav1.ConditionTrue))
	ns := &corev1.Namespace{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: e.NamespaceName()}, ns)).To(Succeed())
	g.Expect(metav1.IsControlledBy(ns, e)).To(BeTrue())
	g.Expect(e.Status.Namespace).To(Equal(ns.Name))

	// The old namespace is held in Terminating by a finalizer of its content;
	// the Entity is released by hand (as `kubectl patch` of its finalizers
	// would) and created again.
	held := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "held", Finalizers: []string{"visio.dev/test-hold"}}}
	g.Expect(k8s.Create(ctx(), held)).To(Succeed())
	release := func() { _ = patch(k8s, held, `{"metadata":{"finalizers":null}}`) }
	t.Cleanup(release)
	g.Expect(k8s.Delete(ctx(), e)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: ns.Name}, ns)).To(Succeed())
		g.Expect(ns.DeletionTimestamp).NotTo(BeNil())
	}).WithTimeout(entityTimeout).Should(Succeed())
	g.Expect(patch(k8s, e, `{"metadata":{"finalizers":null}}`)).To(Succeed())
	gone(g, e)

	again := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: e.Name}, Spec: v1.EntitySpec{DisplayName: "Again", DeletionProtection: ptr.To(false)}}
	g.Expect(k8s.Create(ctx(), again)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), again) })
	g.Eventually(conditionOf(again, v1.ReconcilingCondition)).WithTimeout(entityTimeout).Should(And(
		HaveField("Status", metav1.ConditionTrue), HaveField("Reason", v1.ReasonNamespaceTerminating)))
	g.Expect(meta.FindStatusCondition(again.Status.Conditions, v1.StalledCondition)).To(BeNil())
	// Nothing is admitted into the old namespace on behalf of the new Entity.
	g.Expect(k8s.Create(ctx(), newUser(ns.Name, "early", false))).NotTo(Succeed())

	release()
	g.Eventually(conditionOf(again, v1.ReadyCondition)).WithTimeout(entityTimeout).Should(HaveField("Status", metav1.ConditionTrue))
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: again.NamespaceName()}, ns)).To(Succeed())
	g.Expect(metav1.IsControlledBy(ns, again)).To(BeTrue(), "the new namespace is the new Entity's")
}
