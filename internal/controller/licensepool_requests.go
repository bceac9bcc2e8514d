package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/metrics"
)

// The LicenseRequests of a pool, as its controller counts them.
//
// An approved request counts in its pool's capacity only while it carries
// the finalizer v1.LicenseRequestFinalizer, and the pool controller alone
// adds and removes it: it adds it before it first counts the request, and
// removes it when the request is being deleted, only after the pass that no
// longer counts it has written every user that loses a license. So at no
// instant do the users holding one of a pool's licenses outnumber the
// licenses of the requests that exist: deleting an approved request takes
// its licenses back the way lowering spec.licenses does (guarantee 2), and
// its object stays until that is done.

// requestsOf lists the requests asking licenses of pool, from the cache.
func (r *LicensePoolReconciler) requestsOf(ctx context.Context, pool types.NamespacedName) ([]v1.LicenseRequest, error) {
	list := &v1.LicenseRequestList{}
	if err := r.List(ctx, list, client.InNamespace(pool.Namespace), client.MatchingFields{index.RequestPool: pool.Name}); err != nil {
		return nil, fmt.Errorf("cannot list the license requests of pool %q: %w", pool.Name, err)
	}
	return list.Items, nil
}

// takeCharge adds the finalizer to the approved, unexpired requests that lack
// it, so that they may count in this pass. A request whose finalizer could not
// be written for a conflict (its controller wrote its conditions meanwhile)
// does not count yet, and retry asks for another pass: that write's event
// does not reach the pool.
func (r *LicensePoolReconciler) takeCharge(ctx context.Context, requests []v1.LicenseRequest, now time.Time) (retry bool, err error) {
	for i := range requests {
		lr := &requests[i]
		if !lr.Approved() || lr.ExpiredAt(now) || !lr.DeletionTimestamp.IsZero() || lr.HasFinalizer() {
			continue
		}
		orig := lr.DeepCopy()
		controllerutil.AddFinalizer(lr, v1.LicenseRequestFinalizer)
		if err := r.Patch(ctx, lr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			*lr = *orig
			switch {
			case apierrors.IsConflict(err):
				retry = true
			case !apierrors.IsNotFound(err):
				return retry, fmt.Errorf("cannot take charge of license request %q: %w", lr.Name, err)
			}
		}
	}
	return retry, nil
}

// release lets the requests being deleted go, once the pass that no longer
// counts them has written its users.
func (r *LicensePoolReconciler) release(ctx context.Context, requests []v1.LicenseRequest) error {
	for i := range requests {
		lr := &requests[i]
		if lr.DeletionTimestamp.IsZero() || !lr.HasFinalizer() {
			continue
		}
		orig := lr.DeepCopy()
		lr.Finalizers = slices.DeleteFunc(slices.Clone(lr.Finalizers), func(f string) bool { return f == v1.LicenseRequestFinalizer })
		err := r.Patch(ctx, lr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("cannot release license request %q: %w", lr.Name, err)
		}
	}
	return nil
}

// requestCounts is what the metrics say of a pool's requests.
func requestCounts(requests []v1.LicenseRequest, now time.Time) metrics.RequestCounts {
	var c metrics.RequestCounts
	for i := range requests {
		lr := &requests[i]
		switch {
		case !lr.DeletionTimestamp.IsZero():
		case lr.Pending():
			c.Pending++
			if t := lr.CreationTimestamp.Time; c.OldestPending.IsZero() || t.Before(c.OldestPending) {
				c.OldestPending = t
			}
		case lr.Status.Decision.State == v1.DecisionDenied:
			c.Denied++
		case lr.ExpiredAt(now):
			c.Expired++
		default:
			c.Approved++
		}
	}
	return c
}

// poolOfRequest maps a request to the pool it asks licenses of.
func poolOfRequest(_ context.Context, o client.Object) []reconcile.Request {
	lr := o.(*v1.LicenseRequest)
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: lr.Namespace, Name: lr.PoolName()}}}
}

// requestCountChanged lets through the request events that change what its
// pool counts: a decision, the finalizer, a deletion; not the request's own
// conditions, which its controller writes.
var requestCountChanged = predicate.Funcs{
	UpdateFunc: func(ev event.UpdateEvent) bool {
		o, n := ev.ObjectOld.(*v1.LicenseRequest), ev.ObjectNew.(*v1.LicenseRequest)
		return o.Approved() != n.Approved() || o.Pending() != n.Pending() || o.HasFinalizer() != n.HasFinalizer() ||
			o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}
