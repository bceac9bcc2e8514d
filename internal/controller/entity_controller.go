package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/hierarchy"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/metrics"
)

// namespaceRecheckInterval is how often an Entity whose namespace is taken,
// or still terminating, looks at it again.
const namespaceRecheckInterval = 15 * time.Second

// EntityReconciler keeps an Entity's namespace, its RBAC and its usage rollup.
type EntityReconciler struct {
	client.Client
	// APIReader reads past the cache: what the cache does not hold (it keeps
	// only entity namespaces and the RBAC objects the operator manages), and
	// what must not be stale because data depends on it (what remains in a
	// protected Entity being deleted).
	APIReader client.Reader
	Recorder  events.EventRecorder
	RBAC      RBACOptions
	// PlatformEntity names the Entity whose namespace holds the Concierges.
	PlatformEntity string
	Clock          clock.PassiveClock

	countsWrites countsWrites
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
	now := r.Clock.Now()
	defer func() {
		if retErr != nil && !isTerminal(retErr) {
			setFailed(&entity.Status.StatusBase, entity.Generation, retErr)
		}
		written, err := writeStatusIfChanged(ctx, r.Client, orig, entity, &orig.Status, &entity.Status)
		if err != nil && retErr == nil {
			retErr = err
		}
		if written {
			r.countsWrites.wrote(req.NamespacedName, now)
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

	ns, stalled, err := r.ensureNamespace(ctx, orig, entity)
	if err != nil {
		return ctrl.Result{}, err
	}
	if stalled {
		// A namespace in the way that is not an entity's (a squatter) is not in
		// the cache, which holds entity namespaces only, so no event says it
		// went: look again, once per interval, at one namespace by name.
		return ctrl.Result{RequeueAfter: namespaceRecheckInterval}, nil
	}
	rel, err := hierarchy.Lookup(ctx, r.Client, entity, r.PlatformEntity)
	if err != nil {
		return ctrl.Result{}, err
	}
	observeHierarchy(entity, rel)
	if err := r.ensureRBAC(ctx, entity, ns, rel); err != nil {
		return ctrl.Result{}, err
	}
	if wait := r.countsWrites.wait(req.NamespacedName, now); wait > 0 {
		// A burst into the entity changes its counts at every pass: they are
		// counted and written at most once per interval, and this pass
		// comes back for the last of them. Whatever else changed is written
		// now, with the counts of the last write. The exhaustion warning
		// waits for the pass that counts, so it is given once, with the
		// status that says it.
		setHierarchyStatus(entity, rel)
		r.finishPass(entity, rel)
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if err := r.rollup(ctx, entity, ns.Name); err != nil {
		return ctrl.Result{}, err
	}
	setHierarchyStatus(entity, rel)
	r.finishPass(entity, rel)
	r.warnWhenFull(entity, orig.Status.Licenses)
	return ctrl.Result{}, nil
}

// readyMessage is what `kubectl get ent` shows in the Status column.
func readyMessage(e *v1.Entity) string {
	l := e.Status.Licenses
	msg := fmt.Sprintf("%d/%d licenses used, %s, %s", l.Used, l.Capacity, count(e.Status.Users.Total, "user"), count(e.Status.VMRs.Total, "room"))
	if l.Pending > 0 {
		msg += ", " + waiting(l.Pending) + " for a license"
	}
	if l.Requested > 0 {
		msg += fmt.Sprintf(", %d licenses requested", l.Requested)
	}
	if n := len(e.Status.Children); n > 0 {
		msg += ", " + subEntities(n)
	}
	return msg
}

// ensureNamespace creates the entity namespace, or checks that the one in place
// is ours. It returns stalled=true, having set the conditions, when a human must
// act or the namespace is not there yet.
func (r *EntityReconciler) ensureNamespace(ctx context.Context, orig, e *v1.Entity) (*corev1.Namespace, bool, error) {
	name := e.NamespaceName()
	ns := &corev1.Namespace{}
	err := r.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) {
		// The cache holds entity namespaces only; one of that name that is
		// not (a squatter) is found on the API server.
		err = r.APIReader.Get(ctx, client.ObjectKey{Name: name}, ns)
	}
	switch {
	case apierrors.IsNotFound(err):
		// Record the namespace in status before creating it: status.namespace
		// is part of what makes a namespace this entity's (entityns), so the
		// namespace must never exist without it.
		if orig.Status.Namespace != name {
			e.Status.Namespace = name
			if err := r.Status().Patch(ctx, e, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
				return nil, false, fmt.Errorf("cannot record namespace %q in status: %w", name, err)
			}
			orig.Status.Namespace, orig.ResourceVersion = name, e.ResourceVersion
		}
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
	if !ns.DeletionTimestamp.IsZero() {
		// An earlier entity of the same name (or whoever held the name) is
		// still being cleaned up; the namespace's deletion brings us back.
		if !metav1.IsControlledBy(ns, e) {
			e.Status.Namespace = ""
		}
		setPhase(&e.Status.StatusBase, e.Generation, phaseProgressing, v1.ReasonNamespaceTerminating,
			fmt.Sprintf("namespace %q is being deleted; waiting for it to go", name))
		return nil, true, nil
	}
	if !metav1.IsControlledBy(ns, e) {
		// Not ours: status names no namespace, so that spec.namespace can
		// still be set to another one when it was left to its default.
		e.Status.Namespace = ""
		advice := "set spec.namespace to a free name"
		if e.Spec.Namespace != "" {
			advice = "delete this Entity and create it again with another spec.namespace (it cannot change once set)"
		}
		msg := fmt.Sprintf("namespace %q already exists and was not created for this entity; it is never adopted: delete it (kubectl delete namespace %s) if nothing in it is needed, or %s",
			name, name, advice)
		if cond := findCondition(e.Status.Conditions, v1.StalledCondition); cond == nil || cond.Reason != v1.ReasonNamespaceConflict {
			r.Recorder.Eventf(e, ns, corev1.EventTypeWarning, v1.ReasonNamespaceConflict, "Adopt", msg)
		}
		setPhase(&e.Status.StatusBase, e.Generation, phaseStalled, v1.ReasonNamespaceConflict, msg)
		return nil, true, nil
	}
	e.Status.Namespace = name
	return ns, false, nil
}

// reconcileDelete removes the entity namespace, and with it every user, pool
// and room (whose own finalizers remove the backend rooms), then lets the
// Entity go. A protected Entity that still has users or rooms is not taken
// apart: admission refuses such a deletion where it runs, and this holds when
// it did not (no webhook, or a GitOps prune racing a user's creation). The
// Entity waits, Stalled, and finishes deleting by itself once its content is
// gone or spec.deletionProtection is set to false: user and room deletions
// and the spec change all bring it back here.
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
			if protected, err := r.protectDeletion(ctx, e, ns.Name); err != nil || protected {
				return ctrl.Result{}, err
			}
			if err := r.approveNamespaceDeletion(ctx, e, ns); err != nil {
				return ctrl.Result{}, client.IgnoreNotFound(err)
			}
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

// protectDeletion keeps a protected Entity's namespace while users or rooms
// remain in it, and says what remains. It counts from the API server, not
// the cache: deleting a namespace cannot be undone, and a user created a
// moment ago must protect its entity even if the cache has not shown it yet.
func (r *EntityReconciler) protectDeletion(ctx context.Context, e *v1.Entity, namespace string) (bool, error) {
	if !e.DeletionProtected() {
		return false, nil
	}
	users := &v1.PlatformUserList{}
	if err := r.APIReader.List(ctx, users, client.InNamespace(namespace)); err != nil {
		return false, fmt.Errorf("cannot count the users of namespace %q: %w", namespace, err)
	}
	vmrs := &v1.VMRList{}
	if err := r.APIReader.List(ctx, vmrs, client.InNamespace(namespace)); err != nil {
		return false, fmt.Errorf("cannot count the rooms of namespace %q: %w", namespace, err)
	}
	children, err := hierarchy.ProtectingChildren(ctx, r.APIReader, e, r.PlatformEntity)
	if err != nil {
		return false, err
	}
	nu, nv := int32(len(users.Items)), int32(len(vmrs.Items))
	if nu == 0 && nv == 0 && len(children) == 0 {
		return false, nil
	}
	var what []string
	if nu > 0 || nv > 0 {
		var remains string
		switch {
		case nu > 0 && nv > 0:
			remains = count(nu, "user") + " and " + count(nv, "room")
		case nu > 0:
			remains = count(nu, "user")
		default:
			remains = count(nv, "room")
		}
		verb := "remain"
		if nu+nv == 1 {
			verb = "remains"
		}
		what = append(what, fmt.Sprintf("%s %s in namespace %q", remains, verb, namespace))
	}
	if len(children) > 0 {
		what = append(what, fmt.Sprintf("%s %s %s", subEntities(len(children)), hierarchy.Names(children, 10), pick(len(children) == 1, "names it as its parent", "name it as their parent")))
	}
	msg := fmt.Sprintf("deletion protected: %s; delete them or set spec.deletionProtection to false", strings.Join(what, "; "))
	if cond := findCondition(e.Status.Conditions, v1.StalledCondition); cond == nil || cond.Reason != v1.ReasonDeletionProtected {
		r.Recorder.Eventf(e, nil, corev1.EventTypeWarning, v1.ReasonDeletionProtected, "Delete", msg)
	}
	setPhase(&e.Status.StatusBase, e.Generation, phaseStalled, v1.ReasonDeletionProtected, msg)
	e.Status.Users.Total, e.Status.VMRs.Total = nu, nv
	return true, nil
}

// rollup recounts the entity's licenses, users and rooms from the cache. It
// only reads them, so it reads the cache's own objects rather than copies:
// an entity of 10,000 users would otherwise copy them all at every count.
func (r *EntityReconciler) rollup(ctx context.Context, e *v1.Entity, namespace string) error {
	pools := &v1.LicensePoolList{}
	if err := r.List(ctx, pools, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("cannot list license pools: %w", err)
	}
	users := &v1.PlatformUserList{}
	if err := r.List(ctx, users, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("cannot list users: %w", err)
	}
	vmrs := &v1.VMRList{}
	if err := r.List(ctx, vmrs, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("cannot list rooms: %w", err)
	}
	var lic v1.LicenseCounts
	for i := range pools.Items {
		s := pools.Items[i].Status.LicenseCounts
		lic.Capacity += s.Capacity
		lic.Used += s.Used
		lic.Available += s.Available
		lic.Pending += s.Pending
		lic.Requested += s.Requested
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
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	toEntity := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return entityOfObject(ctx, mgr.GetClient(), o)
	})
	// A namespace maps to the Entity that asks for its name, whoever owns it:
	// a squatting namespace that goes, or an earlier entity's that finishes
	// terminating, lets that Entity create its own.
	byName := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		entities := &v1.EntityList{}
		if err := mgr.GetClient().List(ctx, entities, client.MatchingFields{index.EntityNamespace: o.GetName()}); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(entities.Items))
		for i := range entities.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: entities.Items[i].Name}})
		}
		return reqs
	})
	// An Entity's relatives: its parent (whose subtree counts it) and its
	// children (whose RBAC and standing depend on it).
	relatives := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		e := o.(*v1.Entity)
		var reqs []reconcile.Request
		if e.Spec.Parent != "" {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: e.Spec.Parent}})
		}
		return append(reqs, childrenOf(ctx, mgr.GetClient(), e.Name)...)
	})
	// A user maps to its entity and, when it administers it (the map sees
	// both sides of an update, so a demotion too), to the entity's children,
	// whose bindings name it.
	toEntityAndChildren := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		reqs := entityOfObject(ctx, mgr.GetClient(), o)
		if len(reqs) == 0 {
			return nil
		}
		if role := o.(*v1.PlatformUser).RoleOrDefault(); role != v1.RoleAdministrator && role != v1.RoleConcierge {
			return reqs
		}
		return append(reqs, childrenOf(ctx, mgr.GetClient(), reqs[0].Name)...)
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.Entity{}).
		Watches(&v1.Entity{}, relatives).
		Owns(&corev1.Namespace{}).
		Watches(&corev1.Namespace{}, byName).
		Owns(&rbacv1.RoleBinding{}).
		Owns(&rbacv1.ClusterRole{}).
		Owns(&rbacv1.ClusterRoleBinding{}).
		Watches(&v1.LicensePool{}, toEntity, builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		Watches(&v1.PlatformUser{}, toEntityAndChildren).
		Watches(&v1.VMR{}, toEntity).
		Named("entity").
		Complete(r)
}

// entityOfObject maps an object of an entity namespace to its Entity, by the
// namespace's label.
func entityOfObject(ctx context.Context, c client.Reader, o client.Object) []reconcile.Request {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: o.GetNamespace()}, ns); err != nil {
		return nil
	}
	if name := ns.Labels[v1.EntityLabel]; name != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return nil
}

// childrenOf maps an Entity to the Entities that name it as their parent,
// through the cache's index.
func childrenOf(ctx context.Context, c client.Reader, name string) []reconcile.Request {
	children := &v1.EntityList{}
	if err := c.List(ctx, children, client.MatchingFields{index.EntityParent: name}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(children.Items))
	for i := range children.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: children.Items[i].Name}})
	}
	return reqs
}

// subEntities says n sub-entities in English.
func subEntities(n int) string {
	if n == 1 {
		return "1 sub-entity"
	}
	return fmt.Sprintf("%d sub-entities", n)
}

func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}
