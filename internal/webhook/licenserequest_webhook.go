package webhook

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-tenancy-visio-dev-v1alpha1-licenserequest,mutating=false,failurePolicy=fail,sideEffects=None,groups=tenancy.visio.dev,resources=licenserequests,verbs=create,versions=v1alpha1,name=vlicenserequest.tenancy.visio.dev,admissionReviewVersions=v1,timeoutSeconds=10

// LicenseRequestValidator refuses, up front, a request that could never be
// granted: outside an entity namespace, or for a pool that does not exist.
// Without it the controller reports the same (Stalled, NotInEntityNamespace
// or LicensePoolNotFound). Who may decide, and that a decision is final, are
// RBAC's and the admission policy visio-license-decision's: they need no
// webhook. The spec is immutable by its schema, so only creation is checked.
type LicenseRequestValidator struct {
	checker
}

// ValidateCreate checks a new request.
func (v *LicenseRequestValidator) ValidateCreate(ctx context.Context, lr *v1.LicenseRequest) (admission.Warnings, error) {
	gk := v1.GroupVersion.WithKind("LicenseRequest").GroupKind()
	_, nsErr, err := v.entityOf(ctx, lr.Namespace, "LicenseRequest")
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if nsErr != nil {
		return nil, apierrors.NewInvalid(gk, lr.Name, field.ErrorList{nsErr})
	}
	exists, err := v.poolExists(ctx, lr.Namespace, lr.PoolName())
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if !exists {
		return nil, apierrors.NewInvalid(gk, lr.Name, field.ErrorList{field.NotFound(field.NewPath("spec", "licensePool"),
			fmt.Sprintf("%s (no such license pool in namespace %s: ask for licenses in one of its pools)", lr.PoolName(), lr.Namespace))})
	}
	return nil, nil
}

// ValidateUpdate admits every change the schema admits (metadata only).
func (v *LicenseRequestValidator) ValidateUpdate(context.Context, *v1.LicenseRequest, *v1.LicenseRequest) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete admits every deletion: the pool takes the licenses back first.
func (v *LicenseRequestValidator) ValidateDelete(context.Context, *v1.LicenseRequest) (admission.Warnings, error) {
	return nil, nil
}

// poolExists looks the pool up in the cache, then on the API server: a pool
// created a moment ago may not have reached the cache.
func (v *LicenseRequestValidator) poolExists(ctx context.Context, namespace, name string) (bool, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	for _, r := range []client.Reader{v.Client, v.live} {
		if r == nil {
			continue
		}
		err := r.Get(ctx, key, &v1.LicensePool{})
		if err == nil {
			return true, nil
		}
		if !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("cannot read license pool %q: %w", name, err)
		}
	}
	return false, nil
}
