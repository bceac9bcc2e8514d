package hierarchy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// Relatives is an Entity's place in the hierarchy, as one read saw it.
type Relatives struct {
	// Parent is the parent, set only when the entity is a sub-entity that
	// stands in its parent's hierarchy.
	Parent *v1.Entity
	// Standing says where a sub-entity stands; empty for an entity without
	// spec.parent.
	Standing Standing
	// Children are the sub-entities that stand in this entity's hierarchy,
	// sorted by name; none unless the entity may be a parent.
	Children []*v1.Entity
}

// ChildNames are the names of the children, sorted.
func (r Relatives) ChildNames() []string {
	names := make([]string, 0, len(r.Children))
	for _, c := range r.Children {
		names = append(names, c.Name)
	}
	return names
}

// Lookup finds e's parent, or its children, with r: the manager's cache (its
// index on spec.parent, internal/index) or the API server (the CRD's
// selectable field of the same name), so the same call serves a reconcile
// and a check that must not be stale. What the controllers of Entities and
// LicensePools need of the hierarchy comes from here, so they all see it
// the same way.
func Lookup(ctx context.Context, r client.Reader, e *v1.Entity, platformEntity string) (Relatives, error) {
	var rel Relatives
	if e.Spec.Parent != "" {
		var parent *v1.Entity
		p := &v1.Entity{}
		switch err := r.Get(ctx, client.ObjectKey{Name: e.Spec.Parent}, p); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return rel, fmt.Errorf("cannot read parent entity %q of %q: %w", e.Spec.Parent, e.Name, err)
		default:
			parent = p
		}
		rel.Standing = Check(e, parent, platformEntity)
		if rel.Standing.InHierarchy() {
			rel.Parent = parent
		}
		return rel, nil
	}
	if !CanBeParent(e, platformEntity) {
		return rel, nil
	}
	list := &v1.EntityList{}
	if err := r.List(ctx, list, client.MatchingFields{v1.ParentFieldSelector: e.Name}); err != nil {
		return rel, fmt.Errorf("cannot list the sub-entities of %q: %w", e.Name, err)
	}
	for i := range list.Items {
		if c := &list.Items[i]; Check(c, e, platformEntity).InHierarchy() {
			rel.Children = append(rel.Children, c)
		}
	}
	slices.SortFunc(rel.Children, func(a, b *v1.Entity) int { return strings.Compare(a.Name, b.Name) })
	return rel, nil
}

// ProtectingChildren are the names, sorted, of the sub-entities that keep a
// protected Entity e from being deleted: those in its hierarchy that are not
// being deleted themselves. r is meant to read from the API server (a
// deletion cannot be undone, and a child created a moment ago must count).
func ProtectingChildren(ctx context.Context, r client.Reader, e *v1.Entity, platformEntity string) ([]string, error) {
	rel, err := Lookup(ctx, r, e, platformEntity)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range rel.Children {
		if c.DeletionTimestamp.IsZero() {
			names = append(names, c.Name)
		}
	}
	return names, nil
}
