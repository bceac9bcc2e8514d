package controller

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// patchStatusIfChanged writes the status of obj when it differs from the
// status of orig, as one merge patch of the status subresource. No change, no
// request: in steady state the operator writes nothing.
//
// The patch carries the resourceVersion of orig, so a status computed from a
// stale cache is refused with a Conflict and recomputed, rather than
// overwriting what another writer (an admission reservation, a newer pass)
// stored.
func patchStatusIfChanged(ctx context.Context, c client.Client, orig, obj client.Object, origStatus, newStatus any) error {
	_, err := writeStatusIfChanged(ctx, c, orig, obj, origStatus, newStatus)
	return err
}

// writeStatusIfChanged is patchStatusIfChanged that also tells whether the
// new status was stored: not when nothing changed, nor when the write lost a
// Conflict (the object's watch event is on its way and reconciles it again
// with what is current).
func writeStatusIfChanged(ctx context.Context, c client.Client, orig, obj client.Object, origStatus, newStatus any) (written bool, err error) {
	if equality.Semantic.DeepEqual(origStatus, newStatus) {
		return false, nil
	}
	patch := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
	err = c.Status().Patch(ctx, obj, patch)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("cannot write status: %w", err)
}

// isTerminal reports whether err asks not to be retried (an invalid spec that
// only a new generation can fix).
func isTerminal(err error) bool { return errors.Is(err, reconcile.TerminalError(nil)) }

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	return meta.FindStatusCondition(conds, t)
}

func isConditionTrue(conds []metav1.Condition, t string) bool {
	return meta.IsStatusConditionTrue(conds, t)
}
