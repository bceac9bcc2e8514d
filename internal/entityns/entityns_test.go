package entityns

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "visio.dev/operator/api/v1alpha1"
)

func entity(name, uid, status string) *v1.Entity {
	return &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + uid)}, Status: v1.EntityStatus{Namespace: status}}
}

func namespace(name, label string, owner *metav1.OwnerReference) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if label != "" {
		ns.Labels = map[string]string{v1.EntityLabel: label}
	}
	if owner != nil {
		ns.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return ns
}

func ownerRef(name, uid string) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: v1.GroupVersion.String(), Kind: "Entity", Name: name,
		UID: types.UID("uid-" + uid), Controller: ptr.To(true)}
}

func TestOwns(t *testing.T) {
	e := entity("rennes", "1", "entity-rennes")
	notController := ownerRef("rennes", "1")
	notController.Controller = nil
	otherKind := ownerRef("rennes", "1")
	otherKind.Kind = "LicensePool"
	otherGroup := ownerRef("rennes", "1")
	otherGroup.APIVersion = "evil.example/v1"
	for _, tc := range []struct {
		name string
		ns   *corev1.Namespace
		want bool
	}{
		{"created by the entity", namespace("entity-rennes", "rennes", ownerRef("rennes", "1")), true},
		{"no label", namespace("entity-rennes", "", ownerRef("rennes", "1")), false},
		{"label of another entity", namespace("entity-rennes", "brest", ownerRef("rennes", "1")), false},
		{"no owner", namespace("entity-rennes", "rennes", nil), false},
		{"owner is not the controller", namespace("entity-rennes", "rennes", notController), false},
		{"owner of another kind", namespace("entity-rennes", "rennes", otherKind), false},
		{"owner of another group", namespace("entity-rennes", "rennes", otherGroup), false},
		{"owner with a wrong UID (an earlier entity, or forged)", namespace("entity-rennes", "rennes", ownerRef("rennes", "2")), false},
		{"label and UID right but not the entity's namespace", namespace("squat", "rennes", ownerRef("rennes", "1")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Owns(e, tc.ns); got != tc.want {
				t.Errorf("Owns = %v, want %v", got, tc.want)
			}
		})
	}
	if Owns(entity("rennes", "1", ""), namespace("entity-rennes", "rennes", ownerRef("rennes", "1"))) {
		t.Error("an entity that names no namespace in status owns none")
	}
	if Owns(nil, namespace("entity-rennes", "rennes", ownerRef("rennes", "1"))) || Owns(e, nil) {
		t.Error("nil owns nothing")
	}
}

func TestOfAndNamespaceOf(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = v1.AddToScheme(scheme)
	e := entity("rennes", "1", "entity-rennes")
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(e,
		namespace("entity-rennes", "rennes", ownerRef("rennes", "1")),
		namespace("forged", "rennes", ownerRef("rennes", "1")),
		namespace("orphan", "gone", ownerRef("gone", "9")),
		namespace("plain", "", nil),
	).Build()
	ctx := context.Background()
	for ns, want := range map[string]string{"entity-rennes": "rennes", "forged": "", "orphan": "", "plain": "", "missing": ""} {
		got, _, err := Of(ctx, c, ns)
		if err != nil {
			t.Fatalf("Of(%q): %v", ns, err)
		}
		name := ""
		if got != nil {
			name = got.Name
		}
		if name != want {
			t.Errorf("Of(%q) = %q, want %q", ns, name, want)
		}
	}
	if got, err := NamespaceOf(ctx, c, "rennes"); err != nil || got != "entity-rennes" {
		t.Errorf("NamespaceOf(rennes) = %q, %v", got, err)
	}
	if got, err := NamespaceOf(ctx, c, "platform"); err != nil || got != "" {
		t.Errorf("NamespaceOf(platform) = %q, %v; want none", got, err)
	}
}
