// Package entityns decides which namespaces are entity namespaces. The
// webhooks and the controllers ask the same question (may this namespace hold
// users, pools and rooms; may its people be bound to roles; whose licenses do
// they use) and must get the same answer, or what one layer refuses another
// would grant.
//
// A label can be written by anyone who can create a namespace, and an owner
// reference names an Entity by name and UID that anyone can read; neither is
// proof alone. A namespace is entity E's only when all three hold:
//   - it carries the label tenancy.visio.dev/entity=E,
//   - its controller owner reference is the Entity E, with E's UID (so a
//     namespace left over from an earlier Entity of the same name is not the
//     new one's),
//   - E's status.namespace names it (the Entity says which namespace it
//     created: a namespace dressed up with E's label and UID is not it).
package entityns

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// Owns reports whether ns is the namespace of Entity e.
func Owns(e *v1.Entity, ns *corev1.Namespace) bool {
	if e == nil || ns == nil || e.Name == "" || e.UID == "" {
		return false
	}
	if ns.Labels[v1.EntityLabel] != e.Name || e.Status.Namespace != ns.Name {
		return false
	}
	owner := metav1.GetControllerOf(ns)
	return owner != nil && owner.Kind == "Entity" && owner.APIVersion == v1.GroupVersion.String() &&
		owner.Name == e.Name && owner.UID == e.UID
}

// Of returns the Entity whose namespace is namespace, or nil when it is no
// entity's (missing, unlabelled, forged, or its Entity gone). An error is
// returned only when the API could not be read.
func Of(ctx context.Context, r client.Reader, namespace string) (*v1.Entity, *corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("cannot read namespace %q: %w", namespace, err)
	}
	name := ns.Labels[v1.EntityLabel]
	if name == "" {
		return nil, ns, nil
	}
	e := &v1.Entity{}
	if err := r.Get(ctx, client.ObjectKey{Name: name}, e); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ns, nil
		}
		return nil, ns, fmt.Errorf("cannot read entity %q: %w", name, err)
	}
	if !Owns(e, ns) {
		return nil, ns, nil
	}
	return e, ns, nil
}

// NamespaceOf returns the namespace of the Entity named entity, when that
// Entity exists and its namespace is its own; "" otherwise. The platform
// entity's namespace, where Concierges live, is found this way.
func NamespaceOf(ctx context.Context, r client.Reader, entity string) (string, error) {
	e := &v1.Entity{}
	if err := r.Get(ctx, client.ObjectKey{Name: entity}, e); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("cannot read entity %q: %w", entity, err)
	}
	if e.Status.Namespace == "" {
		return "", nil
	}
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, client.ObjectKey{Name: e.Status.Namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("cannot read namespace %q: %w", e.Status.Namespace, err)
	}
	if !Owns(e, ns) {
		return "", nil
	}
	return ns.Name, nil
}
