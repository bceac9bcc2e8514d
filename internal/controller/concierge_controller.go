package controller

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/entityns"
	"visio.dev/operator/internal/index"
)

// conciergesKey is the one work item of the ConciergeReconciler: concierges
// work across all entities, so their bindings are recomputed as a whole.
var conciergesKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "concierges"}}

// ConciergeReconciler binds the Concierge PlatformUsers of the platform entity
// to the concierge ClusterRole, and to the room PINs of every entity
// namespace. A user carrying the role anywhere else is bound to nothing here:
// admission refuses such a user, but when admission was not called the
// controller is what keeps an entity administrator from making itself
// Concierge.
//
// The PINs are Secrets among the other Secrets of an entity namespace, and RBAC
// selects Secrets by name only, never by label. So each entity namespace gets a
// Role, visio-concierge-pins, that names the PIN Secrets of its rooms (the
// generated ones and those named by spec.pinSecretRef), read-only, and that
// this controller keeps up to date as rooms come and go; the Concierges'
// RoleBinding there points at it. A Secret that is no room's PIN Secret stays
// out of the Concierges' reach.
type ConciergeReconciler struct {
	client.Client
	// APIReader reads objects the cache does not hold.
	APIReader client.Reader
	RBAC      RBACOptions
	// PlatformEntity names the Entity whose namespace holds the Concierges.
	PlatformEntity string
}

// Reconcile recomputes the concierge bindings.
func (r *ConciergeReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	platformNS, err := entityns.NamespaceOf(ctx, r.Client, r.PlatformEntity)
	if err != nil {
		return ctrl.Result{}, err
	}
	var concierges []v1.PlatformUser
	if platformNS != "" {
		list := &v1.PlatformUserList{}
		if err := r.List(ctx, list, client.InNamespace(platformNS), client.MatchingFields{index.UserRole: string(v1.RoleConcierge)}); err != nil {
			return ctrl.Result{}, fmt.Errorf("cannot list concierges: %w", err)
		}
		if concierges, err = emailHolders(ctx, r.Client, list.Items); err != nil {
			return ctrl.Result{}, err
		}
	}
	subs := subjects(r.RBAC, concierges)
	labels := map[string]string{v1.ManagedByLabel: v1.ManagedByValue}
	if err := applyRBAC(ctx, r.Client, r.APIReader, nil, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ConciergesBinding, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleConcierge},
		Subjects:   subs,
	}); err != nil {
		return ctrl.Result{}, err
	}

	namespaces := &corev1.NamespaceList{}
	if err := r.List(ctx, namespaces, client.HasLabels{v1.EntityLabel}); err != nil {
		return ctrl.Result{}, fmt.Errorf("cannot list entity namespaces: %w", err)
	}
	for i := range namespaces.Items {
		ns := &namespaces.Items[i]
		if !ns.DeletionTimestamp.IsZero() {
			continue
		}
		entity := &v1.Entity{}
		if err := r.Get(ctx, client.ObjectKey{Name: ns.Labels[v1.EntityLabel]}, entity); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("cannot read entity %q: %w", ns.Labels[v1.EntityLabel], err)
		}
		if !entityns.Owns(entity, ns) {
			// A namespace dressed up as an entity's gets no binding: the PINs
			// access is for entity namespaces only.
			continue
		}
		nsLabels := map[string]string{v1.ManagedByLabel: v1.ManagedByValue, v1.EntityLabel: entity.Name}
		rules, err := r.pinRules(ctx, ns.Name)
		if err != nil {
			return ctrl.Result{}, err
		}
		if err := applyRBAC(ctx, r.Client, r.APIReader, entity, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: ConciergePINsRole, Namespace: ns.Name, Labels: nsLabels},
			Rules:      rules,
		}); err != nil {
			return ctrl.Result{}, err
		}
		if err := applyRBAC(ctx, r.Client, r.APIReader, entity, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ConciergePINsBinding, Namespace: ns.Name, Labels: nsLabels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ConciergePINsRole},
			Subjects:   subs,
		}); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
}

// pinRules lets read the PIN Secrets of the rooms of namespace, by name; no
// rule at all when there is none (a rule without names would be every Secret).
func (r *ConciergeReconciler) pinRules(ctx context.Context, namespace string) ([]rbacv1.PolicyRule, error) {
	rooms := &v1.VMRList{}
	if err := r.List(ctx, rooms, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("cannot list the rooms of namespace %q: %w", namespace, err)
	}
	var names []string
	for i := range rooms.Items {
		names = append(names, pinSecretNames(&rooms.Items[i])...)
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)
	return []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"},
		ResourceNames: slices.Compact(names), Verbs: []string{"get"}}}, nil
}

// pinSecretNames are the Secrets that hold, or will hold, a room's PINs.
func pinSecretNames(vmr *v1.VMR) []string {
	var out []string
	if ref := vmr.Spec.PINSecretRef; ref != nil && ref.Name != "" {
		out = append(out, ref.Name)
	}
	if n := vmr.Status.PINSecretName; n != "" {
		out = append(out, n)
	}
	return out
}

// SetupWithManager registers the controller. Any PlatformUser, Entity or
// entity namespace change maps to the single work item; the queue coalesces bursts.
// The bindings themselves are watched too, so that a hand edit is undone.
func (r *ConciergeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{conciergesKey}
	})
	named := func(name string) builder.Predicates {
		return builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == name }))
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("concierge").
		// Who is bound depends on the users' specs (role, email) and on
		// their existence, never on their status: the status writes of a
		// burst of users (a license each) wake nothing here.
		Watches(&v1.PlatformUser{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, all).
		Watches(&v1.Entity{}, all).
		Watches(&rbacv1.ClusterRoleBinding{}, all, named(ConciergesBinding)).
		Watches(&rbacv1.RoleBinding{}, all, named(ConciergePINsBinding)).
		Watches(&rbacv1.Role{}, all, named(ConciergePINsRole)).
		Watches(&v1.VMR{}, all, builder.WithPredicates(pinSecretsChanged)).
		Complete(r)
}

// pinSecretsChanged passes the room events that change which Secrets hold PINs.
var pinSecretsChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return !slices.Equal(pinSecretNames(e.ObjectOld.(*v1.VMR)), pinSecretNames(e.ObjectNew.(*v1.VMR)))
	},
}
