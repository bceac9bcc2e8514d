package controller

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/email"
	"visio.dev/operator/internal/entityns"
	"visio.dev/operator/internal/hierarchy"
	"visio.dev/operator/internal/index"
)

// The ClusterRoles the operator ships (config/rbac/roles.yaml and the chart)
// and binds; their rules are the platform's role table made into permissions.
const (
	// ClusterRoleEntityAdministrator: full on PlatformUsers, read on pools and
	// rooms, bound per entity namespace to its Administrators.
	ClusterRoleEntityAdministrator = "visio-entity-administrator"
	// ClusterRoleEntityDelegator: update on license pools, bound in the
	// namespace of an entity with children to its Administrators, who may
	// change the pools' delegations and, by the admission policy
	// visio-license-pool-delegations, nothing else of them.
	ClusterRoleEntityDelegator = "visio-entity-delegator"
	// ClusterRoleConcierge: full on VMRs everywhere, read on everything else.
	ClusterRoleConcierge = "visio-concierge"

	// entityAdminsBinding is the RoleBinding, in each entity namespace, of the
	// entity's Administrators.
	entityAdminsBinding = "visio-entity-administrators"
	// parentAdminsBinding is the RoleBinding, in the namespace of a
	// sub-entity in its parent's hierarchy, of the parent's Administrators,
	// to the same role as entityAdminsBinding.
	parentAdminsBinding = "visio-parent-administrators"
	// delegatorsBinding is the RoleBinding, in the namespace of an entity
	// with children, of its own Administrators to ClusterRoleEntityDelegator.
	delegatorsBinding = "visio-entity-delegators"
	// ConciergePINsRole is the Role, in each entity namespace, that reads the
	// PIN Secrets of its rooms, by name.
	ConciergePINsRole = "visio-concierge-pins"
	// ConciergePINsBinding is the RoleBinding, in each entity namespace, of all
	// Concierges to ConciergePINsRole.
	ConciergePINsBinding = "visio-concierge-pins"
	// ConciergesBinding is the one ClusterRoleBinding of all Concierges.
	ConciergesBinding = "visio-concierges"
)

// RBACOptions says how PlatformUsers appear to the API server.
type RBACOptions struct {
	// UsernamePrefix is prepended to a user's email to form the RBAC subject;
	// it matches the API server's --oidc-username-prefix.
	UsernamePrefix string
}

// Subject is the RBAC subject of a user with the given email.
func (o RBACOptions) Subject(email string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: o.UsernamePrefix + email}
}

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles;clusterrolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=visio-entity-administrator;visio-entity-delegator;visio-concierge

// ensureRBAC binds the entity's Administrators (active or not: seed 000 lets an
// inactive administrator keep administering) in its namespace and lets them
// read their own Entity. A sub-entity in its parent's hierarchy (parent not
// nil) binds its parent's Administrators to exactly the same roles, through
// bindings of their own (parentAdminsBinding, parentReaderName), so that the
// child's bindings still say who its own administrators are; out of the
// hierarchy those bindings go. An entity with children (rel.Children) also
// binds its own Administrators as delegators of its pools (delegatorsBinding);
// without children that binding goes. Concierges are bound by the
// ConciergeReconciler. A user whose email another user of the entity holds is
// bound to nothing.
func (r *EntityReconciler) ensureRBAC(ctx context.Context, e *v1.Entity, ns *corev1.Namespace, rel hierarchy.Relatives) error {
	own, err := r.administrators(ctx, e, ns.Name)
	if err != nil {
		return err
	}
	labels := map[string]string{v1.EntityLabel: e.Name, v1.ManagedByLabel: v1.ManagedByValue}
	objs := []client.Object{
		// An Entity is cluster-scoped, so reading one's own needs a ClusterRole
		// naming it; it goes with the Entity.
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: entityReaderName(e), Labels: labels},
			Rules: []rbacv1.PolicyRule{{
				// The Entity's status comes with it; the manager may only grant
				// what it holds itself, and it has no business on entities/status reads.
				APIGroups: []string{v1.GroupVersion.Group}, Resources: []string{"entities"},
				ResourceNames: []string{e.Name}, Verbs: []string{"get", "watch"},
			}},
		},
	}
	ownSubjects := subjects(r.RBAC, own)
	objs = append(objs, adminBindings(e, ns.Name, entityAdminsBinding, entityReaderName(e), ownSubjects, labels)...)
	var stale []client.Object
	delegators := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: delegatorsBinding, Namespace: ns.Name, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleEntityDelegator},
		Subjects:   ownSubjects,
	}
	if len(rel.Children) > 0 {
		objs = append(objs, delegators)
	} else {
		stale = append(stale, delegators)
	}
	parentBindings := adminBindings(e, ns.Name, parentAdminsBinding, parentReaderName(e), nil, labels)
	if parent := rel.Parent; parent != nil {
		theirs, err := r.parentAdministrators(ctx, parent)
		if err != nil {
			return err
		}
		objs = append(objs, adminBindings(e, ns.Name, parentAdminsBinding, parentReaderName(e), subjects(r.RBAC, theirs), labels)...)
	} else {
		stale = append(stale, parentBindings...)
	}
	for _, o := range objs {
		if err := applyRBAC(ctx, r.Client, r.APIReader, e, o); err != nil {
			return err
		}
	}
	for _, o := range stale {
		if err := deleteRBAC(ctx, r.Client, e, o); err != nil {
			return err
		}
	}
	return nil
}

// adminBindings are the two bindings that make subjects administrators of
// entity e: a RoleBinding named binding in its namespace ns to the
// Administrator role, and a ClusterRoleBinding named reader to the
// ClusterRole that reads e.
func adminBindings(e *v1.Entity, ns, binding, reader string, subjects []rbacv1.Subject, labels map[string]string) []client.Object {
	return []client.Object{
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: binding, Namespace: ns, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleEntityAdministrator},
			Subjects:   subjects,
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: reader, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: entityReaderName(e)},
			Subjects:   subjects,
		},
	}
}

// deleteRBAC deletes obj when the cache shows it, controlled by owner: a
// binding the operator made that no longer applies. Reading the cache first
// keeps a pass that has nothing to delete free of writes.
func deleteRBAC(ctx context.Context, c client.Client, owner, obj client.Object) error {
	existing := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("cannot read %T %s: %w", obj, obj.GetName(), err)
	}
	if !metav1.IsControlledBy(existing, owner) {
		return nil
	}
	uid := existing.GetUID()
	if err := c.Delete(ctx, existing, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("cannot delete %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// administrators are the users of entity e, in its namespace ns, who
// administer it: its Administrators, and outside the platform entity its
// Concierges (admission was not called: a Concierge there is no Concierge,
// it has what an Administrator of its entity has, and not more), less those
// whose email another user of the entity holds.
func (r *EntityReconciler) administrators(ctx context.Context, e *v1.Entity, ns string) ([]v1.PlatformUser, error) {
	admins := &v1.PlatformUserList{}
	if err := r.List(ctx, admins, client.InNamespace(ns), client.MatchingFields{index.UserRole: string(v1.RoleAdministrator)}); err != nil {
		return nil, fmt.Errorf("cannot list the administrators of entity %q: %w", e.Name, err)
	}
	if e.Name != r.PlatformEntity {
		misplaced := &v1.PlatformUserList{}
		if err := r.List(ctx, misplaced, client.InNamespace(ns), client.MatchingFields{index.UserRole: string(v1.RoleConcierge)}); err != nil {
			return nil, fmt.Errorf("cannot list the concierges of entity %q: %w", e.Name, err)
		}
		admins.Items = append(admins.Items, misplaced.Items...)
	}
	return emailHolders(ctx, r.Client, admins.Items)
}

// parentAdministrators are the administrators of parent, read from its own
// namespace: the one it created (entityns), never one merely labelled with
// its name. A parent whose namespace is not there (yet, or any more) has none.
func (r *EntityReconciler) parentAdministrators(ctx context.Context, parent *v1.Entity) ([]v1.PlatformUser, error) {
	if parent.Status.Namespace == "" {
		return nil, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, client.ObjectKey{Name: parent.Status.Namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("cannot read namespace %q of parent entity %q: %w", parent.Status.Namespace, parent.Name, err)
	}
	if !entityns.Owns(parent, ns) {
		return nil, nil
	}
	return r.administrators(ctx, parent, ns.Name)
}

// subjects are the RBAC subjects of users, sorted and unique so that the
// bindings are stable and a resync writes nothing.
func subjects(o RBACOptions, users []v1.PlatformUser) []rbacv1.Subject {
	names := make([]string, 0, len(users))
	for i := range users {
		if users[i].DeletionTimestamp.IsZero() {
			names = append(names, email.Canonical(users[i].Spec.Email))
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]rbacv1.Subject, 0, len(names))
	for _, n := range names {
		out = append(out, o.Subject(n))
	}
	return out
}

func entityReaderName(e *v1.Entity) string { return "visio-entity-" + e.Name + "-reader" }

// parentReaderName is the ClusterRoleBinding of a sub-entity's parent
// Administrators to the ClusterRole that reads the sub-entity.
func parentReaderName(e *v1.Entity) string { return "visio-entity-" + e.Name + "-parent-reader" }

// applyRBAC creates desired, controlled by owner when there is one, or updates the existing one when its
// subjects or rules differ. Objects the operator did not create are left alone.
// The cache holds only the RBAC objects the operator manages (CacheOptions), so
// an object of the same name that it does not manage is read from the API
// server (live) when the create finds it.
func applyRBAC(ctx context.Context, c client.Client, live client.Reader, owner client.Object, desired client.Object) error {
	if owner != nil {
		if err := controllerutil.SetControllerReference(owner, desired, c.Scheme()); err != nil {
			return err
		}
	}
	existing := desired.DeepCopyObject().(client.Object)
	err := c.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	if apierrors.IsNotFound(err) {
		err = c.Create(ctx, desired)
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cannot create %T %s: %w", desired, desired.GetName(), err)
		}
		// Not in the cache: not the operator's, or created so recently that
		// the cache has not seen it yet.
		err = live.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	}
	if err != nil {
		return fmt.Errorf("cannot read %T %s: %w", desired, desired.GetName(), err)
	}
	if owner != nil && !metav1.IsControlledBy(existing, owner) || existing.GetLabels()[v1.ManagedByLabel] != v1.ManagedByValue {
		return fmt.Errorf("%T %s exists and was not created by the operator; remove it or rename it", desired, desired.GetName())
	}
	changed := false
	switch d := desired.(type) {
	case *rbacv1.RoleBinding:
		x := existing.(*rbacv1.RoleBinding)
		if x.RoleRef != d.RoleRef {
			// The role of a binding cannot change: replace it (bindings of
			// earlier versions pointed elsewhere).
			if err := c.Delete(ctx, x, client.Preconditions{UID: &x.UID}); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("cannot replace RoleBinding %s: %w", x.Name, err)
			}
			return fmt.Errorf("RoleBinding %s pointed at %s %s: replaced", x.Name, x.RoleRef.Kind, x.RoleRef.Name)
		}
		if !equality.Semantic.DeepEqual(x.Subjects, d.Subjects) {
			x.Subjects, changed = d.Subjects, true
		}
	case *rbacv1.Role:
		x := existing.(*rbacv1.Role)
		if !equality.Semantic.DeepEqual(x.Rules, d.Rules) {
			x.Rules, changed = d.Rules, true
		}
	case *rbacv1.ClusterRoleBinding:
		x := existing.(*rbacv1.ClusterRoleBinding)
		if !equality.Semantic.DeepEqual(x.Subjects, d.Subjects) {
			x.Subjects, changed = d.Subjects, true
		}
	case *rbacv1.ClusterRole:
		x := existing.(*rbacv1.ClusterRole)
		if !equality.Semantic.DeepEqual(x.Rules, d.Rules) {
			x.Rules, changed = d.Rules, true
		}
	}
	if !changed {
		return nil
	}
	if err := c.Update(ctx, existing); err != nil {
		return fmt.Errorf("cannot update %T %s: %w", desired, desired.GetName(), err)
	}
	return nil
}

// deleteClusterRBAC removes the entity's cluster-scoped RBAC; the namespaced
// bindings go with the namespace.
func (r *EntityReconciler) deleteClusterRBAC(ctx context.Context, e *v1.Entity) error {
	for _, o := range []client.Object{
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: entityReaderName(e)}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: parentReaderName(e)}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: entityReaderName(e)}},
	} {
		if err := r.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("cannot delete %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}
