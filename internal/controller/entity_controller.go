package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/metrics"
)

// EntityReconciler keeps an Entity's namespace, its RBAC and its usage rollup.
type EntityReconciler struct {
	client.Client
	Recorder events.EventRecorder
	RBAC     RBACOptions
}

// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=entities,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=entities/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=entities/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Entity towards its spec.
func (r *EntityReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	entity := &v1.Entity{}
	if err := r.Get(ctx, req.NamespacedName, entity); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.ForgetEntity(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := entity.DeepCopy()
	defer func() {
		if retErr != nil && !isTerminal(retErr) {
			setFailed(&entity.Status.StatusBase, entity.Generation, retErr)
		}
		if err := patchStatusIfChanged(ctx, r.Client, orig, entity, &orig.Status, &entity.Status); err != nil && retErr == nil {
			retErr = err
		}
	}()

	if !entity.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, entity)
	}
	if controllerutil.AddFinalizer(entity, v1.EntityFinalizer) {
		// The finalizer must be stored before the namespace exists, or a deletion
		// racing with creation could leave the namespace behind.
		if err := r.Update(ctx, entity); err != nil {
			return ctrl.Result{}, fmt.Errorf("cannot add finalizer: %w", err)
		}
		orig.ObjectMeta = *entity.ObjectMeta.DeepCopy()
	}

	ns, stalled, err := r.ensureNamespace(ctx, entity)
	if err != nil || stalled {
		return ctrl.Result{}, err
	}
	if err := r.ensureRBAC(ctx, entity, ns); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.rollup(ctx, entity, ns.Name); err != nil {
		return ctrl.Result{}, err
	}
	r.warnWhenFull(entity, orig.Status.Licenses)
	setPhase(&entity.Status.StatusBase, entity.Generation, phaseReady, v1.ReasonReconciled, readyMessage(entity))
	return ctrl.Result{}, nil
}

// readyMessage is what `kubectl get ent` shows in the Status column.
func readyMessage(e *v1.Entity) string {
	l := e.Status.Licenses
	msg := fmt.Sprintf("%d/%d licenses used, %s, %s", l.Used, l.Capacity, count(e.Status.Users.Total, "user"), count(e.Status.VMRs.Total, "room"))
	if l.Pending > 0 {
		msg += ", " + waiting(l.Pending) + " for a license"
	}
	return msg
}

// ensureNamespace creates the entity namespace, or checks that the one in place
// is ours. It returns stalled=true, having set the conditions, when a human must
// act.
func (r *EntityReconciler) ensureNamespace(ctx context.Context, e *v1.Entity) (*corev1.Namespace, bool, error) {
	name := e.NamespaceName()
	e.Status.Namespace = name
	ns := &corev1.Namespace{}
	err := r.Get(ctx, client.ObjectKey{Name: name}, ns)
	switch {
	case apierrors.IsNotFound(err):
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{v1.EntityLabel: e.Name, v1.ManagedByLabel: v1.ManagedByValue},
		}}
		if err := controllerutil.SetControllerReference(e, ns, r.Scheme()); err != nil {
			return nil, false, err
		}
		if err := r.Create(ctx, ns); err != nil {
			return nil, false, fmt.Errorf("cannot create namespace %q: %w", name, err)
		}
		r.Recorder.Eventf(e, ns, corev1.EventTypeNormal, "NamespaceCreated", "Create", "Created namespace %s", name)
		return ns, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("cannot read namespace %q: %w", name, err)
	}
	if !metav1.IsControlledBy(ns, e) {
		msg := fmt.Sprintf("namespace %q already exists and was not created for this entity; choose another spec.namespace or remove it", name)
		if cond := findCondition(e.Status.Conditions, v1.StalledCondition); cond == nil || cond.Reason != v1.ReasonNamespaceConflict {
			r.Recorder.Eventf(e, ns, corev1.EventTypeWarning, v1.ReasonNamespaceConflict, "Adopt", msg)
		}
		setPhase(&e.Status.StatusBase, e.Generation, phaseStalled, v1.ReasonNamespaceConflict, msg)
		return nil, true, nil
	}
	if !ns.DeletionTimestamp.IsZero() {
		// A previous entity of the same name is still being cleaned up; the
		// namespace event will bring us back when it is gone.
		setPhase(&e.Status.StatusBase, e.Generation, phaseProgressing, v1.ReasonNamespaceTerminating,
			fmt.Sprintf("namespace %q is being deleted; waiting for it to go", name))
		return nil, true, nil
	}
	return ns, false, nil
}

// reconcileDelete removes the entity namespace, and with it every user, pool
// and room (whose own finalizers remove the backend rooms), then lets the
// Entity go. Admission has already refused the deletion if it was protected.
func (r *EntityReconciler) reconcileDelete(ctx context.Context, e *v1.Entity) (ctrl.Result, error) {
	metrics.ForgetEntity(e.Name)
	if !controllerutil.ContainsFinalizer(e, v1.EntityFinalizer) {
		return ctrl.Result{}, nil
	}
	ns := &corev1.Namespace{}
	err := r.Get(ctx, client.ObjectKey{Name: e.NamespaceName()}, ns)
	switch {
	case apierrors.IsNotFound(err):
		// Gone: fall through to release the entity.
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("cannot read namespace %q: %w", e.NamespaceName(), err)
	case !metav1.IsControlledBy(ns, e):
		// Never ours: nothing to clean up.
	default:
		if ns.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, ns, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("cannot delete namespace %q: %w", ns.Name, err)
			}
			r.Recorder.Eventf(e, ns, corev1.EventTypeNormal, "NamespaceDeleting", "Delete", "Deleting namespace %s and everything in it", ns.Name)
		}
		setPhase(&e.Status.StatusBase, e.Generation, phaseProgressing, v1.ReasonNamespaceTerminating,
			fmt.Sprintf("deleting namespace %q and everything in it", ns.Name))
		// The namespace's deletion event requeues us; the poll is a safety net.
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	if err := r.deleteClusterRBAC(ctx, e); err != nil {
		return ctrl.Result{}, err
	}
	controllerutil.RemoveFinalizer(e, v1.EntityFinalizer)
	if err := r.Update(ctx, e); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// rollup recounts the entity's licenses, users and rooms from the cache.
func (r *EntityReconciler) rollup(ctx context.Context, e *v1.Entity, namespace string) error {
	pools := &v1.LicensePoolList{}
	if err := r.List(ctx, pools, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("cannot list license pools: %w", err)
	}
	users := &v1.PlatformUserList{}
	if err := r.List(ctx, users, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("cannot list users: %w", err)
	}
	vmrs := &v1.VMRList{}
	if err := r.List(ctx, vmrs, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("cannot list rooms: %w", err)
	}
	var lic v1.LicenseCounts
	for i := range pools.Items {
		s := pools.Items[i].Status.LicenseCounts
		lic.Capacity += s.Capacity
		lic.Used += s.Used
		lic.Available += s.Available
		lic.Pending += s.Pending
	}
	uc := v1.UserCounts{Total: int32(len(users.Items))}
	for i := range users.Items {
		u := &users.Items[i]
		if u.IsActive() {
			uc.Active++
		}
		if isConditionTrue(u.Status.Conditions, v1.LicensedCondition) {
			uc.Licensed++
		}
		if uc.ByRole == nil {
			uc.ByRole = map[v1.PlatformUserRole]int32{}
		}
		uc.ByRole[u.RoleOrDefault()]++
	}
	vc := v1.VMRCounts{Total: int32(len(vmrs.Items))}
	for i := range vmrs.Items {
		if isConditionTrue(vmrs.Items[i].Status.Conditions, v1.ReadyCondition) {
			vc.Ready++
		}
	}
	e.Status.Licenses, e.Status.Users, e.Status.VMRs = lic, uc, vc
	metrics.ObserveEntity(e.Name, users.Items, vmrs.Items)
	return nil
}

// warnWhenFull records a Warning on the Entity when its licenses run out or
// users start waiting for one: the event a concierge following the entity
// (kubectl describe ent, kubectl get events) must not miss, without watching
// every pool. The rollup stored in status before this pass is the memory, so
// a resync or an operator restart does not repeat the event.
func (r *EntityReconciler) warnWhenFull(e *v1.Entity, before v1.LicenseCounts) {
	now := e.Status.Licenses
	if !licensesExhausted(now) || licensesExhausted(before) {
		return
	}
	r.Recorder.Eventf(e, nil, corev1.EventTypeWarning, v1.ReasonLicensePoolExhausted, "Allocate",
		"Entity %q has no license left: %d/%d licenses used, %s; deactivate users or grant more licenses",
		e.Name, now.Used, now.Capacity, waiting(now.Pending))
}

// licensesExhausted: every allocated license is held, or someone waits for one.
// An entity with no license at all is not "full": it was never given any.
func licensesExhausted(l v1.LicenseCounts) bool {
	return l.Pending > 0 || (l.Capacity > 0 && l.Available == 0)
}

// SetupWithManager registers the controller: Entities, the namespaces and RBAC
// objects they own (so that a hand edit of a generated binding is undone) and,
// mapped to their entity through the namespace label, the pools, users and
// rooms they count.
func (r *EntityReconciler) SetupWithManager(mgr ctrl.Manager) error {
	toEntity := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		ns := &corev1.Namespace{}
		if err := mgr.GetClient().Get(ctx, client.ObjectKey{Name: o.GetNamespace()}, ns); err != nil {
			return nil
		}
		if name := ns.Labels[v1.EntityLabel]; name != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
		}
		return nil
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.Entity{}).
		Owns(&corev1.Namespace{}).
		Owns(&rbacv1.RoleBinding{}).
		Owns(&rbacv1.ClusterRole{}).
		Owns(&rbacv1.ClusterRoleBinding{}).
		Watches(&v1.LicensePool{}, toEntity, builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		Watches(&v1.PlatformUser{}, toEntity).
		Watches(&v1.VMR{}, toEntity).
		Named("entity").
		Complete(r)
}
