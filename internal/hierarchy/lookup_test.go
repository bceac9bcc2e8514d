package hierarchy

import (
	"context"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "visio.dev/operator/api/v1alpha1"
)

// TestLookup reads a small forest the way the controllers do, through the
// index on spec.parent: a parent sees the children that stand under it and
// not a grandchild's claim; a child sees its parent; a grandchild, an orphan
// and the platform entity see nobody.
func TestLookup(t *testing.T) {
	const platform = "platform"
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	leaving := entity("leaving", "root")
	now := metav1.Now()
	leaving.DeletionTimestamp, leaving.Finalizers = &now, []string{"keep"}
	objs := []client.Object{
		entity("root", ""), entity("b", "root"), entity("a", "root"), leaving,
		entity("grandchild", "a"), entity("orphan", "missing"),
		entity(platform, ""), entity("under-platform", platform),
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithIndex(&v1.Entity{}, v1.ParentFieldSelector, func(o client.Object) []string {
			if p := o.(*v1.Entity).Spec.Parent; p != "" {
				return []string{p}
			}
			return nil
		}).Build()
	get := func(name string) *v1.Entity {
		e := &v1.Entity{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, tc := range []struct {
		name     string
		parent   string
		reason   string
		children []string
	}{
		{"root", "", "", []string{"a", "b", "leaving"}},
		{"a", "root", "", nil},
		{"grandchild", "", v1.ReasonNestingTooDeep, nil},
		{"orphan", "", v1.ReasonParentNotFound, nil},
		{platform, "", "", nil},
		{"under-platform", "", v1.ReasonNestingTooDeep, nil},
	} {
		rel, err := Lookup(context.Background(), c, get(tc.name), platform)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		gotParent := ""
		if rel.Parent != nil {
			gotParent = rel.Parent.Name
		}
		if gotParent != tc.parent || rel.Standing.Reason != tc.reason || !reflect.DeepEqual(nilIfEmpty(rel.ChildNames()), tc.children) {
			t.Errorf("%s: parent %q, reason %q, children %v; want %q, %q, %v",
				tc.name, gotParent, rel.Standing.Reason, rel.ChildNames(), tc.parent, tc.reason, tc.children)
		}
	}
	protecting, err := ProtectingChildren(context.Background(), c, get("root"), platform)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(protecting, []string{"a", "b"}) {
		t.Errorf("children protecting root: %v, want a and b (not the one being deleted)", protecting)
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
