package controller

import (
	"context"
	"slices"
	"testing"

	v1 "visio.dev/operator/api/v1alpha1"
)

// The Concierges' PIN Role names exactly the PIN Secrets of the namespace's
// rooms, and is empty, not "every Secret", when there is none.
func TestPINRules(t *testing.T) {
	generated := testVMR("a", "ns", "uid-a", func(v *v1.VMR) { v.Status.PINSecretName = "a-pins" })
	given := testVMR("b", "ns", "uid-b", func(v *v1.VMR) { v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "board-pins"} })
	both := testVMR("c", "ns", "uid-c", func(v *v1.VMR) {
		v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "board-pins"}
		v.Status.PINSecretName = "board-pins"
	})
	elsewhere := testVMR("d", "other", "uid-d", func(v *v1.VMR) { v.Status.PINSecretName = "d-pins" })
	r := &ConciergeReconciler{Client: newFakeClient(t, generated, given, both, elsewhere)}

	rules, err := r.pinRules(context.Background(), "ns")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 1 || !slices.Equal(rules[0].ResourceNames, []string{"a-pins", "board-pins"}) ||
		!slices.Equal(rules[0].Verbs, []string{"get"}) || !slices.Equal(rules[0].Resources, []string{"secrets"}) {
		t.Errorf("got %+v", rules)
	}
	rules, err = r.pinRules(context.Background(), "empty")
	if err != nil || rules != nil {
		t.Errorf("a namespace without rooms: got %+v, %v; want no rule", rules, err)
	}
}
