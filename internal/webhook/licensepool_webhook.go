package webhook

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-tenancy-visio-dev-v1alpha1-licensepool,mutating=false,failurePolicy=fail,sideEffects=None,groups=tenancy.visio.dev,resources=licensepools,verbs=create;update;delete,versions=v1alpha1,name=vlicensepool.tenancy.visio.dev,admissionReviewVersions=v1,timeoutSeconds=10

// LicensePoolValidator keeps pools in entity namespaces and out of the hands
// of the entity's own administrators: more licenses are requested from the
// platform, not self-granted.
type LicensePoolValidator struct {
	checker
	reserver *licenseReserver
}

// ValidateCreate checks a new pool.
func (v *LicensePoolValidator) ValidateCreate(ctx context.Context, p *v1.LicensePool) (admission.Warnings, error) {
	return nil, v.validate(ctx, p)
}

// ValidateUpdate checks a changed pool and, last, reserves what a raise of
// its delegations takes, so that a change refused for another reason takes
// nothing. Status writes (admission's own reservations, the controller's
// counts) go through the status subresource and are not seen here.
func (v *LicensePoolValidator) ValidateUpdate(ctx context.Context, old, p *v1.LicensePool) (admission.Warnings, error) {
	if err := v.validate(ctx, p); err != nil {
		return nil, err
	}
	if v.reserver == nil {
		return nil, nil
	}
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	entity, _, err := v.entityOf(ctx, p.Namespace, "LicensePool")
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	dryRun := req.DryRun != nil && *req.DryRun
	if fe, err := v.reserver.reserveRaise(ctx, old, p, entity, dryRun); err != nil {
		return nil, apierrors.NewInternalError(err)
	} else if fe != nil {
		return nil, apierrors.NewInvalid(v1.GroupVersion.WithKind("LicensePool").GroupKind(), p.Name, field.ErrorList{fe})
	}
	return nil, nil
}

// ValidateDelete keeps entity administrators from deleting their pool.
func (v *LicensePoolValidator) ValidateDelete(ctx context.Context, p *v1.LicensePool) (admission.Warnings, error) {
	return nil, v.refuseEntityAdministrators(ctx, p)
}

func (v *LicensePoolValidator) validate(ctx context.Context, p *v1.LicensePool) error {
	_, nsErr, err := v.entityOf(ctx, p.Namespace, "LicensePool")
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if nsErr != nil {
		return apierrors.NewInvalid(v1.GroupVersion.WithKind("LicensePool").GroupKind(), p.Name, field.ErrorList{nsErr})
	}
	return v.refuseEntityAdministrators(ctx, p)
}

// refuseEntityAdministrators refuses a change requested by an Administrator of
// the pool's entity who is not a platform administrator. RBAC already gives
// them read-only access; this holds even if someone binds them more widely.
func (v *LicensePoolValidator) refuseEntityAdministrators(ctx context.Context, p *v1.LicensePool) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if v.isPlatformAdmin(req.UserInfo) {
		return nil
	}
	users, err := v.usersOfRequester(ctx, req.UserInfo)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	for i := range users {
		if users[i].Namespace == p.Namespace && users[i].RoleOrDefault() == v1.RoleAdministrator {
			return apierrors.NewForbidden(v1.GroupVersion.WithResource("licensepools").GroupResource(), p.Name, errEntityAdminPool)
		}
	}
	return nil
}

var errEntityAdminPool = errors.New("entity administrators cannot change their own license pools; ask the platform for more licenses")
