package webhook

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-tenancy-visio-dev-v1alpha1-entity,mutating=false,failurePolicy=fail,sideEffects=None,groups=tenancy.visio.dev,resources=entities,verbs=delete,versions=v1alpha1,name=ventity.tenancy.visio.dev,admissionReviewVersions=v1,timeoutSeconds=10

// EntityValidator enforces deletion protection: an Entity that still has users
// or rooms is not deleted while spec.deletionProtection is true.
type EntityValidator struct {
	checker
	// APIReader counts what remains from the API server, not the cache: a
	// deletion is rare and cannot be undone, so a user created a moment ago
	// and not yet in this replica's cache must still protect its entity.
	APIReader client.Reader
}

// ValidateCreate has nothing to check beyond the schema.
func (v *EntityValidator) ValidateCreate(context.Context, *v1.Entity) (admission.Warnings, error) {
	return nil, nil
}

// ValidateUpdate has nothing to check beyond the schema.
func (v *EntityValidator) ValidateUpdate(context.Context, *v1.Entity, *v1.Entity) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete refuses to delete a protected Entity that still has users or
// rooms, and says what remains.
func (v *EntityValidator) ValidateDelete(ctx context.Context, e *v1.Entity) (admission.Warnings, error) {
	if !e.DeletionProtected() {
		return nil, nil
	}
	ns := e.NamespaceName()
	users := &v1.PlatformUserList{}
	if err := v.APIReader.List(ctx, users, client.InNamespace(ns)); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	vmrs := &v1.VMRList{}
	if err := v.APIReader.List(ctx, vmrs, client.InNamespace(ns)); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	var remains []string
	if n := len(users.Items); n > 0 {
		remains = append(remains, plural(n, "PlatformUser"))
	}
	if n := len(vmrs.Items); n > 0 {
		remains = append(remains, plural(n, "VMR"))
	}
	if len(remains) == 0 {
		return nil, nil
	}
	// The message starts with the reason the Entity's conditions use for the
	// same refusal, so that what a GitOps tool reports of a refused prune
	// (Flux's PruneFailed message, Argo CD's sync result) names it too.
	return nil, apierrors.NewForbidden(v1.GroupVersion.WithResource("entities").GroupResource(), e.Name, fmt.Errorf(
		"%s: entity %q is protected from deletion and still has %s in namespace %q; delete them first, or set spec.deletionProtection to false to delete everything",
		v1.ReasonDeletionProtected, e.Name, strings.Join(remains, " and "), ns))
}

func plural(n int, kind string) string {
	if n == 1 {
		return "1 " + kind
	}
	return fmt.Sprintf("%d %ss", n, kind)
}
