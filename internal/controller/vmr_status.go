package controller

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/pins"
	"visio.dev/operator/internal/rooms"
)

// computeStatus sets the whole status of vmr from what the pass found: the
// numeric id, the addresses that dial the room (and only those), the PIN
// Secret and the version whose PINs the room has, and the conditions. It is
// the only place the status is decided; the phases only observe and act.
func (r *VMRReconciler) computeStatus(vmr *v1.VMR, pass *vmrPass, retErr error) {
	st := &vmr.Status
	if pass.numericID != "" {
		st.NumericID = pass.numericID
	}
	switch {
	case pass.pinsRead:
		st.PINSecretName = pass.pins.secret
	case pass.block != nil && pass.block.reason == v1.ReasonInvalidPINs:
		st.PINSecretName = ""
	}
	if pass.ready {
		st.PINSecretResourceVersion = pass.pins.version
	}
	if pass.advertiseSet {
		r.setAddresses(vmr, pass.advertise)
	}

	switch {
	case pass.block != nil:
		setProvisioned(vmr, metav1.ConditionFalse, pass.block.reason, pass.block.message)
		setPhase(&st.StatusBase, vmr.Generation, phaseStalled, pass.block.reason, pass.block.message)
	case pass.failure != nil:
		setProvisioned(vmr, metav1.ConditionFalse, v1.ReasonBackendError, pass.failure.msg)
		setPhase(&st.StatusBase, vmr.Generation, phaseProgressing, v1.ReasonBackendError, pass.failure.msg)
	case pass.ready:
		msg := fmt.Sprintf("room %s provisioned in %s", st.NumericID, r.Backend.Name())
		setProvisioned(vmr, metav1.ConditionTrue, v1.ReasonProvisioned, msg)
		setPhase(&st.StatusBase, vmr.Generation, phaseReady, v1.ReasonProvisioned, msg)
	case retErr != nil && !isTerminal(retErr):
		if !isBackendFailure(retErr) {
			setFailed(&st.StatusBase, vmr.Generation, retErr)
		}
	}
}

// setAddresses records how the room is dialled: the aliases of the spec,
// the join URL (by number) and the SIP URI that dial reaches, and nothing
// that does not dial it.
func (r *VMRReconciler) setAddresses(vmr *v1.VMR, dial []string) {
	st := &vmr.Status
	st.Aliases, st.JoinURL, st.SIPURI = nil, "", ""
	for _, a := range rooms.SortedAliases(vmr.Spec.Aliases) {
		if slices.Contains(dial, a) {
			st.Aliases = append(st.Aliases, a)
		}
	}
	n := st.NumericID
	if r.JoinBaseURL != "" && n != "" && slices.Contains(dial, n) {
		st.JoinURL = r.JoinBaseURL + n
	}
	if sip := rooms.SIPAlias(n, r.SIPDomain); sip != "" && slices.Contains(dial, sip) {
		st.SIPURI = "sip:" + sip
	}
}

// emitTransition sends one event when the pass changed the reason of Ready:
// Normal when the room became Ready, Warning when it stopped being Ready or
// changed problem. A room stuck on the same problem is retried without
// repeating the event.
func (r *VMRReconciler) emitTransition(orig, vmr *v1.VMR) {
	before := meta.FindStatusCondition(orig.Status.Conditions, v1.ReadyCondition)
	after := meta.FindStatusCondition(vmr.Status.Conditions, v1.ReadyCondition)
	if after == nil || after.Reason == v1.ReasonReconcileFailed || !vmr.DeletionTimestamp.IsZero() {
		return
	}
	if before != nil && before.Reason == after.Reason {
		return
	}
	kind := corev1.EventTypeWarning
	if after.Status == metav1.ConditionTrue {
		kind = corev1.EventTypeNormal
	}
	r.Recorder.Eventf(vmr, nil, kind, after.Reason, "Reconcile", "%s", after.Message)
}

func setProvisioned(vmr *v1.VMR, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&vmr.Status.Conditions, metav1.Condition{Type: v1.ProvisionedCondition, Status: status,
		Reason: reason, Message: msg, ObservedGeneration: vmr.Generation})
}

// backendFailure is a backend failure the status already explains: the pass's final
// status write keeps that explanation instead of the generic ReconcileFailed.
// Its message has the room's PINs removed; the wrapped error is kept for
// errors.Is.
type backendFailure struct {
	msg string
	err error
}

func (e *backendFailure) Error() string { return e.msg }
func (e *backendFailure) Unwrap() error { return e.err }

func isBackendFailure(err error) bool {
	var re *backendFailure
	return errors.As(err, &re)
}

// redactPINs removes the PINs from s, with any number they are part of.
func redactPINs(s string, secrets ...string) string { return pins.Redact(s, secrets...) }

func joinFieldNames(fields []string) string { return strings.Join(fields, ", ") }

// pinRedactedError carries an error whose text had the room's PINs removed;
// the original stays reachable for errors.Is and apierrors checks.
type pinRedactedError struct {
	msg string
	err error
}

func (e *pinRedactedError) Error() string { return e.msg }
func (e *pinRedactedError) Unwrap() error { return e.err }
