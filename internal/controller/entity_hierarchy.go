package controller

import (
	corev1 "k8s.io/api/core/v1"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/hierarchy"
	"visio.dev/operator/internal/metrics"
)

// setHierarchyStatus records a parent's children and its subtree counts: its
// own counts as this pass left them plus each child's, as the child last
// reported them (a child's status change brings its parent back, so the sum
// follows). An entity without children has neither.
func setHierarchyStatus(e *v1.Entity, rel hierarchy.Relatives) {
	if len(rel.Children) == 0 {
		e.Status.Children, e.Status.Subtree = nil, nil
		return
	}
	counts := make([]v1.EntityCounts, 0, len(rel.Children))
	for _, c := range rel.Children {
		counts = append(counts, v1.EntityCounts{Licenses: c.Status.Licenses, Users: c.Status.Users, VMRs: c.Status.VMRs})
	}
	own := v1.EntityCounts{Licenses: e.Status.Licenses, Users: e.Status.Users, VMRs: e.Status.VMRs}
	subtree := hierarchy.Subtree(own, counts...)
	e.Status.Children, e.Status.Subtree = rel.ChildNames(), &subtree
}

// observeHierarchy publishes the parent the entity stands under, for the
// dashboards that group sub-entities under their parent.
func observeHierarchy(e *v1.Entity, rel hierarchy.Relatives) {
	parent := ""
	if rel.Parent != nil {
		parent = rel.Parent.Name
	}
	metrics.ObserveHierarchy(e.Name, parent)
}

// finishPass ends a pass that went through: Ready, or, for a sub-entity kept
// out of its parent's hierarchy, Stalled with the reason (its own namespace,
// RBAC and counts are kept all the same: only the hierarchy is refused). A
// Warning event marks the transition.
func (r *EntityReconciler) finishPass(e *v1.Entity, rel hierarchy.Relatives) {
	if s := rel.Standing; !s.InHierarchy() {
		if cond := findCondition(e.Status.Conditions, v1.StalledCondition); cond == nil || cond.Reason != s.Reason || cond.Message != s.Condition {
			r.Recorder.Eventf(e, nil, corev1.EventTypeWarning, s.Reason, "Nest", s.Condition)
		}
		setPhase(&e.Status.StatusBase, e.Generation, phaseStalled, s.Reason, s.Condition)
		return
	}
	setPhase(&e.Status.StatusBase, e.Generation, phaseReady, v1.ReasonReconciled, readyMessage(e))
}
