package webhook

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
)

// +kubebuilder:webhook:path=/validate-tenancy-visio-dev-v1alpha1-platformuser,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.visio.dev,resources=platformusers,verbs=create;update,versions=v1alpha1,name=vplatformuser.tenancy.visio.dev,admissionReviewVersions=v1,timeoutSeconds=10

// PlatformUserValidator checks what needs other objects or the requester: the
// entity namespace, a unique email, a real time zone, who may grant the
// Concierge role, and, under Deny, a free license (which it reserves).
type PlatformUserValidator struct {
	checker
	reserver *licenseReserver
}

var gk = v1.GroupVersion.WithKind("PlatformUser").GroupKind()

// ValidateCreate checks a new user.
func (v *PlatformUserValidator) ValidateCreate(ctx context.Context, u *v1.PlatformUser) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, u)
}

// ValidateUpdate checks a changed user.
func (v *PlatformUserValidator) ValidateUpdate(ctx context.Context, old, u *v1.PlatformUser) (admission.Warnings, error) {
	return nil, v.validate(ctx, old, u)
}

// ValidateDelete allows every deletion: it frees a license.
func (v *PlatformUserValidator) ValidateDelete(context.Context, *v1.PlatformUser) (admission.Warnings, error) {
	return nil, nil
}

func (v *PlatformUserValidator) validate(ctx context.Context, old, u *v1.PlatformUser) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	spec := field.NewPath("spec")
	var errs field.ErrorList

	entity, nsErr, err := v.entityOf(ctx, u.Namespace, "PlatformUser")
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if nsErr != nil {
		return apierrors.NewInvalid(gk, u.Name, field.ErrorList{nsErr})
	}

	if tz := u.Spec.TimeZone; tz != "" && (old == nil || old.Spec.TimeZone != tz) {
		if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
			errs = append(errs, field.Invalid(spec.Child("timeZone"), tz, "not a known IANA time zone, e.g. Europe/Paris"))
		}
	}
	if old == nil || old.Spec.Email != u.Spec.Email {
		others := &v1.PlatformUserList{}
		if err := v.List(ctx, others, client.InNamespace(u.Namespace), client.MatchingFields{index.UserEmail: u.Spec.Email}); err != nil {
			return apierrors.NewInternalError(err)
		}
		for i := range others.Items {
			if others.Items[i].Name != u.Name {
				dup := field.Duplicate(spec.Child("email"), u.Spec.Email)
				dup.Detail = fmt.Sprintf("already used by PlatformUser %q of entity %q", others.Items[i].Name, entity)
				errs = append(errs, dup)
				break
			}
		}
	}
	if u.RoleOrDefault() == v1.RoleConcierge && (old == nil || old.RoleOrDefault() != v1.RoleConcierge) && !v.isPlatformAdmin(req.UserInfo) {
		ok, err := v.isConcierge(ctx, req.UserInfo)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if !ok {
			errs = append(errs, field.Forbidden(spec.Child("role"), "only a Concierge or a platform administrator may grant the Concierge role"))
		}
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(gk, u.Name, errs)
	}

	// Reserve last, so that a request refused for another reason takes no license.
	activating := u.IsActive() && (old == nil || !old.IsActive() || old.PoolName() != u.PoolName())
	if !activating {
		return nil
	}
	dryRun := req.DryRun != nil && *req.DryRun
	if fe, err := v.reserver.reserve(ctx, u, entity, dryRun); err != nil {
		return apierrors.NewInternalError(err)
	} else if fe != nil {
		return apierrors.NewInvalid(gk, u.Name, field.ErrorList{fe})
	}
	return nil
}
