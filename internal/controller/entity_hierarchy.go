package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/hierarchy"
	"visio.dev/operator/internal/index"
)

// entityHierarchy is what one pass saw of an Entity's place among its
// relatives, from the cache: every change to them brings the entity back
// (SetupWithManager), so what the cache shows late is set right at the next
// pass.
type entityHierarchy struct {
	// parent is the parent when the entity is a sub-entity in its hierarchy.
	parent *v1.Entity
	// standing says where a sub-entity stands (empty for an entity with no parent).
	standing hierarchy.Standing
	// children are the sub-entities in this entity's hierarchy, sorted by name.
	children []*v1.Entity
}

// observeHierarchy finds e's parent, or its children.
func (r *EntityReconciler) observeHierarchy(ctx context.Context, e *v1.Entity) (entityHierarchy, error) {
	var h entityHierarchy
	if e.Spec.Parent != "" {
		var parent *v1.Entity
		p := &v1.Entity{}
		switch err := r.Get(ctx, client.ObjectKey{Name: e.Spec.Parent}, p); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return h, fmt.Errorf("cannot read parent entity %q: %w", e.Spec.Parent, err)
		default:
			parent = p
		}
		h.standing = hierarchy.Check(e, parent, r.PlatformEntity)
		if h.standing.InHierarchy() {
			h.parent = parent
		}
		return h, nil
	}
	if !hierarchy.CanBeParent(e, r.PlatformEntity) {
		return h, nil
	}
	list := &v1.EntityList{}
	if err := r.List(ctx, list, client.MatchingFields{index.EntityParent: e.Name}); err != nil {
		return h, fmt.Errorf("cannot list the sub-entities of %q: %w", e.Name, err)
	}
	for i := range list.Items {
		if c := &list.Items[i]; hierarchy.Check(c, e, r.PlatformEntity).InHierarchy() {
			h.children = append(h.children, c)
		}
	}
	slices.SortFunc(h.children, func(a, b *v1.Entity) int { return strings.Compare(a.Name, b.Name) })
	return h, nil
}

// setHierarchyStatus records a parent's children and its subtree counts: its
// own counts as this pass left them plus each child's, as the child last
// reported them. An entity without children has neither.
func setHierarchyStatus(e *v1.Entity, h entityHierarchy) {
	if len(h.children) == 0 {
		e.Status.Children, e.Status.Subtree = nil, nil
		return
	}
	names := make([]string, 0, len(h.children))
	counts := make([]v1.EntityCounts, 0, len(h.children))
	for _, c := range h.children {
		names = append(names, c.Name)
		counts = append(counts, v1.EntityCounts{Licenses: c.Status.Licenses, Users: c.Status.Users, VMRs: c.Status.VMRs})
	}
	own := v1.EntityCounts{Licenses: e.Status.Licenses, Users: e.Status.Users, VMRs: e.Status.VMRs}
	subtree := hierarchy.Subtree(own, counts...)
	e.Status.Children, e.Status.Subtree = names, &subtree
}

// finishPass ends a pass that went through: Ready, or, for a sub-entity kept
// out of its parent's hierarchy, Stalled with the reason (its own namespace,
// RBAC and counts are kept all the same: only the hierarchy is refused). A
// Warning event marks the transition.
func (r *EntityReconciler) finishPass(e *v1.Entity, h entityHierarchy) {
	if s := h.standing; !s.InHierarchy() {
		if cond := findCondition(e.Status.Conditions, v1.StalledCondition); cond == nil || cond.Reason != s.Reason || cond.Message != s.Message {
			r.Recorder.Eventf(e, nil, corev1.EventTypeWarning, s.Reason, "Nest", s.Message)
		}
		setPhase(&e.Status.StatusBase, e.Generation, phaseStalled, s.Reason, s.Message)
		return
	}
	setPhase(&e.Status.StatusBase, e.Generation, phaseReady, v1.ReasonReconciled, readyMessage(e))
}
