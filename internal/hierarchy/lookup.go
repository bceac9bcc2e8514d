package hierarchy

import (
	"context"
	"fmt"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// ProtectingChildren are the names, sorted, of the sub-entities that keep a
// protected Entity e from being deleted: those in its hierarchy that are not
// being deleted themselves. r is meant to read from the API server (a
// deletion cannot be undone, and a child created a moment ago must count),
// through the CRD's selectable field spec.parent.
func ProtectingChildren(ctx context.Context, r client.Reader, e *v1.Entity, platformEntity string) ([]string, error) {
	if !CanBeParent(e, platformEntity) {
		return nil, nil
	}
	list := &v1.EntityList{}
	if err := r.List(ctx, list, client.MatchingFields{v1.ParentFieldSelector: e.Name}); err != nil {
		return nil, fmt.Errorf("cannot list the sub-entities of %q: %w", e.Name, err)
	}
	var names []string
	for i := range list.Items {
		c := &list.Items[i]
		if c.DeletionTimestamp.IsZero() && Check(c, e, platformEntity).InHierarchy() {
			names = append(names, c.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}
