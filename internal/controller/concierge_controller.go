package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
type ConciergeReconciler struct {
	client.Client
	RBAC RBACOptions
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
	if err := applyRBAC(ctx, r.Client, nil, &rbacv1.ClusterRoleBinding{
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
		if err := applyRBAC(ctx, r.Client, entity, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ConciergePINsBinding, Namespace: ns.Name,
				Labels: map[string]string{v1.ManagedByLabel: v1.ManagedByValue, v1.EntityLabel: entity.Name}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleConciergePINs},
			Subjects: subs,
		}); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
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
		Watches(&v1.PlatformUser{}, all).
		Watches(&corev1.Namespace{}, all).
		Watches(&v1.Entity{}, all).
		Watches(&rbacv1.ClusterRoleBinding{}, all, named(ConciergesBinding)).
		Watches(&rbacv1.RoleBinding{}, all, named(ConciergePINsBinding)).
		Complete(r)
}
