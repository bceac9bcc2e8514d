package controller

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "visio.dev/operator/api/v1alpha1"
)

// requestObservation is what one pass saw around a LicenseRequest.
type requestObservation struct {
	// entity owns the request's namespace, "" when no Entity does.
	entity string
	// poolExists: the named pool is there and not being deleted.
	poolExists bool
}

// computeRequestStatus sets the whole status of lr from the request itself,
// obs and the clock, and says when to look again (at expiry), 0 for never.
func computeRequestStatus(lr *v1.LicenseRequest, obs requestObservation, now time.Time) time.Duration {
	st := &lr.Status
	st.ExpiresAt = lr.ExpiryOf()
	d := st.Decision
	n := lr.Spec.Licenses
	pool := lr.PoolName()

	approved := metav1.Condition{Type: v1.ApprovedCondition, Status: metav1.ConditionUnknown,
		Reason: v1.ReasonAwaitingDecision, Message: "awaiting a decision by a Concierge or a platform administrator"}
	if d != nil {
		approved.Status, approved.Reason = metav1.ConditionTrue, string(v1.DecisionApproved)
		approved.Message = "approved by " + d.By
		if d.State == v1.DecisionDenied {
			approved.Status, approved.Reason = metav1.ConditionFalse, v1.ReasonDenied
			approved.Message = "denied by " + d.By
		}
		if d.Message != "" {
			approved.Message += ": " + d.Message
		}
	}
	approved.ObservedGeneration = lr.Generation
	meta.SetStatusCondition(&st.Conditions, approved)

	var requeue time.Duration
	switch {
	case obs.entity == "":
		setPhase(&st.StatusBase, lr.Generation, phaseStalled, v1.ReasonNotInEntityNamespace,
			fmt.Sprintf("namespace %s belongs to no Entity: license requests are made in an entity namespace", lr.Namespace))
	case d != nil && d.State == v1.DecisionDenied:
		setPhase(&st.StatusBase, lr.Generation, phaseStalled, v1.ReasonDenied, approved.Message)
	case lr.ExpiredAt(now):
		setPhase(&st.StatusBase, lr.Generation, phaseStalled, v1.ReasonExpired,
			fmt.Sprintf("the %s of license pool %q expired at %s; ask again with a new request",
				licensesWord(n), pool, st.ExpiresAt.UTC().Format(time.RFC3339)))
	case !obs.poolExists:
		setPhase(&st.StatusBase, lr.Generation, phaseStalled, v1.ReasonLicensePoolNotFound,
			fmt.Sprintf("license pool %q does not exist in namespace %s", pool, lr.Namespace))
	case d == nil:
		setPhase(&st.StatusBase, lr.Generation, phaseProgressing, v1.ReasonAwaitingDecision,
			fmt.Sprintf("%s requested for license pool %q, awaiting a decision", licensesWord(n), pool))
	case !lr.HasFinalizer():
		setPhase(&st.StatusBase, lr.Generation, phaseProgressing, v1.ReasonProgressing,
			fmt.Sprintf("approved; license pool %q has not counted the %s yet", pool, licensesWord(n)))
	default:
		msg := fmt.Sprintf("%s granted in license pool %q by %s", licensesWord(n), pool, d.By)
		if st.ExpiresAt != nil {
			msg += ", until " + st.ExpiresAt.UTC().Format(time.RFC3339)
			requeue = max(st.ExpiresAt.Sub(now), time.Second)
		}
		setPhase(&st.StatusBase, lr.Generation, phaseReady, v1.ReasonGranted, msg)
	}
	return requeue
}

// licensesWord is "1 license" or "n licenses".
func licensesWord(n int32) string {
	if n == 1 {
		return "1 license"
	}
	return fmt.Sprintf("%d licenses", n)
}

// emitRequestTransition records one event per step of a request, from the
// change of its Ready reason: first seen (LicensesRequested), granted,
// denied, expired. A request that stays where it is records nothing more.
func (r *LicenseRequestReconciler) emitRequestTransition(orig, lr *v1.LicenseRequest) {
	before := meta.FindStatusCondition(orig.Status.Conditions, v1.ReadyCondition)
	after := meta.FindStatusCondition(lr.Status.Conditions, v1.ReadyCondition)
	if after == nil || before != nil && before.Reason == after.Reason {
		return
	}
	if before == nil {
		r.Recorder.Eventf(lr, nil, corev1.EventTypeNormal, v1.ReasonLicensesRequested, "Request",
			"%s requested for license pool %q: %s", licensesWord(lr.Spec.Licenses), lr.PoolName(), lr.Spec.Reason)
	}
	kind, reason := corev1.EventTypeNormal, ""
	switch after.Reason {
	case v1.ReasonGranted:
		reason = v1.ReasonLicensesGranted
	case v1.ReasonDenied:
		kind, reason = corev1.EventTypeWarning, v1.ReasonLicensesDenied
	case v1.ReasonExpired:
		kind, reason = corev1.EventTypeWarning, v1.ReasonLicensesExpired
	case v1.ReasonLicensePoolNotFound, v1.ReasonNotInEntityNamespace:
		kind, reason = corev1.EventTypeWarning, after.Reason
	}
	if reason == "" {
		return
	}
	r.Recorder.Eventf(lr, nil, kind, reason, "Decide", "%s", after.Message)
}
