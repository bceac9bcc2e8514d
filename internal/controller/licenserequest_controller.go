package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
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

// LicenseRequestReconciler reports where a LicenseRequest stands: awaiting a
// decision, denied, granted in its pool, or expired. It never decides (a
// Concierge or a platform administrator writes status.decision) and never
// counts licenses: the LicensePool controller counts approved requests, and
// owns the request's finalizer, which it adds before it first counts one and
// removes once it has taken its licenses back. This controller reads that
// finalizer as "counted by the pool".
type LicenseRequestReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
}

// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=licenserequests,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=licenserequests/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=licenserequests/finalizers,verbs=update

// Reconcile recomputes one request's status.
func (r *LicenseRequestReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	lr := &v1.LicenseRequest{}
	if err := r.Get(ctx, req.NamespacedName, lr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !lr.DeletionTimestamp.IsZero() {
		// Its pool takes the licenses back and lets it go; nothing to report.
		return ctrl.Result{}, nil
	}
	orig := lr.DeepCopy()
	now := r.Clock.Now()

	obs, err := r.observe(ctx, lr)
	if err != nil {
		setFailed(&lr.Status.StatusBase, lr.Generation, err)
		_ = patchStatusIfChanged(ctx, r.Client, orig, lr, &orig.Status, &lr.Status)
		return ctrl.Result{}, err
	}
	requeue := computeRequestStatus(lr, obs, now)
	if err := patchStatusIfChanged(ctx, r.Client, orig, lr, &orig.Status, &lr.Status); err != nil {
		return ctrl.Result{}, err
	}
	r.emitRequestTransition(orig, lr)
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// observe gathers what the request's status depends on beyond the request.
func (r *LicenseRequestReconciler) observe(ctx context.Context, lr *v1.LicenseRequest) (requestObservation, error) {
	var obs requestObservation
	e, _, err := entityns.Of(ctx, r.Client, lr.Namespace)
	if err != nil {
		return obs, err
	}
	if e != nil {
		obs.entity = e.Name
	}
	pool := &v1.LicensePool{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: lr.Namespace, Name: lr.PoolName()}, pool); {
	case err == nil:
		obs.poolExists = pool.DeletionTimestamp.IsZero()
	case !apierrors.IsNotFound(err):
		return obs, fmt.Errorf("cannot read license pool %q: %w", lr.PoolName(), err)
	}
	return obs, nil
}

// SetupWithManager registers the controller: requests, and pools mapped to
// the requests that name them (a pool created or deleted changes their state).
func (r *LicenseRequestReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.LicenseRequest{}).
		Watches(&v1.LicensePool{}, handler.EnqueueRequestsFromMapFunc(r.requestsOfPool), builderPoolPresence).
		Named("licenserequest").
		Complete(r)
}

// requestsOfPool maps a pool to the requests that ask licenses of it.
func (r *LicenseRequestReconciler) requestsOfPool(ctx context.Context, o client.Object) []reconcile.Request {
	list := &v1.LicenseRequestList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index.RequestPool: o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return reqs
}

// builderPoolPresence lets through the pool events that change a request's
// state: created, deleted, or marked for deletion; not its counts.
var builderPoolPresence = builder.WithPredicates(predicate.Funcs{
	UpdateFunc: func(ev event.UpdateEvent) bool {
		return ev.ObjectOld.GetDeletionTimestamp().IsZero() != ev.ObjectNew.GetDeletionTimestamp().IsZero()
	},
})
