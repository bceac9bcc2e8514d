package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	v1 "visio.dev/operator/api/v1alpha1"
)

// phase is where one reconcile pass left an object, in kstatus terms. Every
// controller ends its pass by choosing one, and setPhase derives Ready,
// Reconciling and Stalled from it so the three never contradict each other.
type phase int

const (
	// phaseReady: the object matches its spec. Ready=True; Reconciling and Stalled removed.
	phaseReady phase = iota
	// phaseProgressing: work is under way or waiting on something that will come by
	// itself. Ready=False, Reconciling=True; Stalled removed.
	phaseProgressing
	// phaseStalled: a human must act. Ready=False, Stalled=True; Reconciling removed.
	phaseStalled
)

// setPhase records the outcome of a pass on the object's conditions and, for
// every phase but a transient failure, marks the generation as observed.
// Reason and message go on Ready and on the condition that explains it, so that
// `kubectl get` (the Status column shows Ready's message) says why.
func setPhase(st *v1.StatusBase, generation int64, p phase, reason, message string) {
	set := func(t string, s metav1.ConditionStatus) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: message, ObservedGeneration: generation,
		})
	}
	switch p {
	case phaseReady:
		set(v1.ReadyCondition, metav1.ConditionTrue)
		meta.RemoveStatusCondition(&st.Conditions, v1.ReconcilingCondition)
		meta.RemoveStatusCondition(&st.Conditions, v1.StalledCondition)
	case phaseProgressing:
		set(v1.ReadyCondition, metav1.ConditionFalse)
		set(v1.ReconcilingCondition, metav1.ConditionTrue)
		meta.RemoveStatusCondition(&st.Conditions, v1.StalledCondition)
	case phaseStalled:
		set(v1.ReadyCondition, metav1.ConditionFalse)
		set(v1.StalledCondition, metav1.ConditionTrue)
		meta.RemoveStatusCondition(&st.Conditions, v1.ReconcilingCondition)
	}
	st.ObservedGeneration = generation
}

// setFailed records a transient failure: the operator retries, so the object is
// Reconciling, and the generation is not marked observed because the pass did
// not complete.
func setFailed(st *v1.StatusBase, generation int64, err error) {
	msg := truncate(err.Error())
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1.ReadyCondition, Status: metav1.ConditionFalse,
		Reason: v1.ReasonReconcileFailed, Message: msg, ObservedGeneration: generation})
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1.ReconcilingCondition, Status: metav1.ConditionTrue,
		Reason: v1.ReasonReconcileFailed, Message: msg, ObservedGeneration: generation})
	meta.RemoveStatusCondition(&st.Conditions, v1.StalledCondition)
}

// truncate keeps condition messages within the API's 32 KiB limit and short
// enough for a printer column.
func truncate(s string) string {
	const max = 1024
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

// EventRecorder is what the controllers use to record events (the
// events.k8s.io API).
type EventRecorder = events.EventRecorder

// waiting says how many users wait for a license, in words: "1 user waiting".
func waiting(n int32) string { return count(n, "user") + " waiting" }

// count says n things in English: "1 room", "2 rooms".
func count(n int32, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
