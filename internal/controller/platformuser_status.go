package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/capabilities"
	"visio.dev/operator/internal/licensing"
)

// desiredUserStatus is the status a user should have after the pass of the
// pool named pool (nil when pool does not exist) decided d for it. It returns
// nil for a user this pass must not write: one that names another pool and
// held no license here.
func (r *LicensePoolReconciler) desiredUserStatus(u *v1.PlatformUser, poolName string, pool *v1.LicensePool,
	d licensing.Decision, capacity int32, alloc licensing.Allocation, place userPlace) *v1.PlatformUserStatus {
	st := u.Status.DeepCopy()
	role := place.effectiveRole(u)
	licensed := func(s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1.LicensedCondition, Status: s,
			Reason: reason, Message: msg, ObservedGeneration: u.Generation})
	}
	unlicense := func() {
		st.LicensePool, st.LicensedSince = "", nil
		st.Capabilities = capabilities.For(role, false)
	}

	if u.PoolName() != poolName {
		if d.Outcome != licensing.Released {
			return nil
		}
		// The user moved: release this pool's license now; the pool it names
		// decides whether it gets one there.
		msg := fmt.Sprintf("moved to license pool %q; waiting for its decision", u.PoolName())
		unlicense()
		licensed(metav1.ConditionFalse, v1.ReasonProgressing, msg)
		setPhase(&st.StatusBase, u.Generation, phaseProgressing, v1.ReasonProgressing, msg)
		return st
	}

	holder := place.emailHolders[u.Name]
	switch {
	case place.entity == "":
		msg := place.notInEntityMessage("user")
		unlicense()
		st.Capabilities = nil
		licensed(metav1.ConditionFalse, v1.ReasonNotInEntityNamespace, msg)
		setPhase(&st.StatusBase, u.Generation, phaseStalled, v1.ReasonNotInEntityNamespace, msg)
		return st
	case holder != nil:
		msg := emailConflictMessage(u, holder)
		unlicense()
		st.Capabilities = nil
		licensed(metav1.ConditionFalse, v1.ReasonEmailConflict, msg)
		setPhase(&st.StatusBase, u.Generation, phaseStalled, v1.ReasonEmailConflict, msg)
		return st
	case pool == nil:
		msg := fmt.Sprintf("license pool %q does not exist in namespace %q; create it or set spec.licensePool", poolName, u.Namespace)
		unlicense()
		licensed(metav1.ConditionFalse, v1.ReasonLicensePoolNotFound, msg)
		setPhase(&st.StatusBase, u.Generation, phaseStalled, v1.ReasonLicensePoolNotFound, msg)
	case !u.IsActive():
		msg := "deactivated: holds no license"
		if capabilities.AtLeast(role, v1.RoleAdministrator) {
			msg += "; keeps administering"
		}
		unlicense()
		licensed(metav1.ConditionFalse, v1.ReasonDeactivated, msg)
		setPhase(&st.StatusBase, u.Generation, phaseReady, v1.ReasonDeactivated, msg)
	case d.Licensed:
		msg := fmt.Sprintf("holds a license of pool %q", poolName)
		st.LicensePool = poolName
		st.LicensedSince = &metav1.Time{Time: *d.Since}
		st.Capabilities = capabilities.For(role, true)
		licensed(metav1.ConditionTrue, v1.ReasonLicensed, msg)
		setPhase(&st.StatusBase, u.Generation, phaseReady, v1.ReasonLicensed, msg)
	case d.Outcome == licensing.Revoked:
		msg := fmt.Sprintf("license revoked: pool %q now has %d licenses and the most recently licensed users lose theirs first; waiting for a license",
			poolName, capacity)
		unlicense()
		licensed(metav1.ConditionFalse, v1.ReasonLicenseRevoked, msg)
		setPhase(&st.StatusBase, u.Generation, phaseStalled, v1.ReasonLicensePoolExhausted, msg)
	default: // waiting
		msg := fmt.Sprintf("license pool %q is full: %d/%d licenses used; waiting for a license (deactivate a user or request more licenses)",
			poolName, alloc.Licensed, capacity)
		unlicense()
		licensed(metav1.ConditionFalse, v1.ReasonLicensePoolExhausted, msg)
		setPhase(&st.StatusBase, u.Generation, phaseStalled, v1.ReasonLicensePoolExhausted, msg)
	}
	if place.misplacedConcierge(u) && pool != nil {
		// The license is decided as for anyone of the entity; the role is not
		// honoured, and a human must move or demote the user.
		setPhase(&st.StatusBase, u.Generation, phaseStalled, v1.ReasonConciergeOutsidePlatform, place.misplacedConciergeMessage())
	}
	return st
}

// recordUserEvents records what a pass changed that a reader of events needs,
// once the pass's writes succeeded. A license granted is in the user's status
// (condition Licensed, with its transition time) and in the pool's counts, so
// it gets no event: in a burst that would be one write more per user. Losses
// get a Warning per user; users newly waiting get one Warning on the pool per
// pass, naming how many.
func (r *LicensePoolReconciler) recordUserEvents(users *v1.PlatformUserList, alloc licensing.Allocation, pool *v1.LicensePool,
	poolName string, capacity int32) {
	var related runtime.Object // a nil *LicensePool would not be a nil interface
	if pool != nil {
		related = pool
	}
	newlyWaiting := 0
	for i, d := range alloc.Decisions {
		u := &users.Items[i]
		if u.PoolName() != poolName {
			continue
		}
		switch d.Outcome {
		case licensing.Revoked:
			r.Recorder.Eventf(u, related, corev1.EventTypeWarning, v1.ReasonLicenseRevoked, "Allocate",
				"License pool %q shrank to %d licenses: user %s, among the most recently licensed, lost its license", poolName, capacity, u.Name)
		case licensing.Waiting:
			prev := findCondition(u.Status.Conditions, v1.LicensedCondition)
			if prev == nil || prev.Reason != v1.ReasonLicensePoolExhausted && prev.Reason != v1.ReasonLicenseRevoked {
				newlyWaiting++
			}
		}
	}
	if pool != nil && newlyWaiting > 0 {
		r.Recorder.Eventf(pool, nil, corev1.EventTypeWarning, v1.ReasonLicensePoolExhausted, "Allocate",
			"License pool %q of namespace %q is full: %d/%d licenses used; %s more waiting, %s",
			pool.Name, pool.Namespace, alloc.Licensed, capacity, count(int32(newlyWaiting), "user"), waiting(alloc.Waiting))
	}
}
