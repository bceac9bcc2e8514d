package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// NamespaceDeletionApproved is the annotation by which the operator approves
// the deletion of an entity namespace, set to the UID of the Entity being
// deleted. The admission policy visio-entity-namespace-deletion
// (config/policies) refuses to delete an entity namespace, to everyone, unless
// the operator's service account asks and the namespace carries this approval
// from its controlling Entity; a second policy lets only the operator set it.
const NamespaceDeletionApproved = "tenancy.visio.dev/deletion-approved"

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=patch

// approveNamespaceDeletion marks ns, the namespace of the Entity e being
// deleted, as approved for deletion, just before the controller deletes it.
func (r *EntityReconciler) approveNamespaceDeletion(ctx context.Context, e *v1.Entity, ns *corev1.Namespace) error {
	if ns.Annotations[NamespaceDeletionApproved] == string(e.UID) {
		return nil
	}
	// Optimistic lock on the UID: the approval goes to this namespace only,
	// never to one of the same name created meanwhile.
	doc := fmt.Sprintf(`{"metadata":{"uid":%q,"annotations":{%q:%q}}}`, ns.UID, NamespaceDeletionApproved, e.UID)
	if err := r.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(doc))); err != nil {
		return fmt.Errorf("cannot approve the deletion of namespace %q: %w", ns.Name, err)
	}
	return nil
}
