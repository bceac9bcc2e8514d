package webhook

import (
	"context"
	"fmt"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/email"
	"visio.dev/operator/internal/entityns"
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
		if err := email.Check(u.Spec.Email); err != nil {
			errs = append(errs, field.Invalid(spec.Child("email"), u.Spec.Email, err.Error()))
		}
		others := &v1.PlatformUserList{}
		if err := v.List(ctx, others, client.InNamespace(u.Namespace), client.MatchingFields{index.UserEmail: email.Canonical(u.Spec.Email)}); err != nil {
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
	if fe, err := v.checkConciergePlace(ctx, entity, old, u); err != nil {
		return apierrors.NewInternalError(err)
	} else if fe != nil {
		errs = append(errs, fe)
	}
	if fe, err := v.checkConciergeGrant(ctx, req.UserInfo, old, u); err != nil {
		return apierrors.NewInternalError(err)
	} else if fe != nil {
		errs = append(errs, fe)
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
	generation := int64(1) // a create is stored at generation 1, an update one past the old
	if old != nil {
		generation = old.Generation + 1
	}
	if fe, err := v.reserver.reserve(ctx, u, generation, entity, dryRun); err != nil {
		return apierrors.NewInternalError(err)
	} else if fe != nil {
		return apierrors.NewInvalid(gk, u.Name, field.ErrorList{fe})
	}
	return nil
}

// checkConciergePlace refuses the Concierge role outside the platform entity:
// Concierges are the platform's support staff, not members of a customer
// entity. A user that already carries the role there (made while admission
// was not called) may still be edited, to be demoted; the controller gives it
// nothing meanwhile.
func (v *PlatformUserValidator) checkConciergePlace(ctx context.Context, entity string, old, u *v1.PlatformUser) (*field.Error, error) {
	if u.RoleOrDefault() != v1.RoleConcierge || old != nil && old.RoleOrDefault() == v1.RoleConcierge || entity == v.opts.PlatformEntity {
		return nil, nil
	}
	where := fmt.Sprintf("the platform entity %q", v.opts.PlatformEntity)
	ns, err := entityns.NamespaceOf(ctx, v.Client, v.opts.PlatformEntity)
	if err != nil {
		return nil, err
	}
	if ns != "" {
		where += fmt.Sprintf(" (namespace %q)", ns)
	} else {
		where += " (which does not exist yet)"
	}
	return field.Forbidden(field.NewPath("spec", "role"), fmt.Sprintf(
		"Concierges are the platform's support staff and belong in %s, not in entity %q; use Administrator here, or create the Concierge there",
		where, entity)), nil
}

// checkConciergeGrant refuses to give the Concierge role to anyone unless the
// requester is a Concierge or a platform administrator. The role is given by
// creating a Concierge, by promoting a user, and also by changing the email of
// a Concierge: the email is the RBAC subject, so the new address's owner would
// get the role (an entity administrator could otherwise make himself Concierge
// by writing his own address on a Concierge of his entity).
func (v *PlatformUserValidator) checkConciergeGrant(ctx context.Context, requester authnv1.UserInfo, old, u *v1.PlatformUser) (*field.Error, error) {
	if u.RoleOrDefault() != v1.RoleConcierge {
		return nil, nil
	}
	promoted := old == nil || old.RoleOrDefault() != v1.RoleConcierge
	moved := !promoted && old.Spec.Email != u.Spec.Email
	if !promoted && !moved || v.isPlatformAdmin(requester) {
		return nil, nil
	}
	ok, err := v.isConcierge(ctx, requester)
	if err != nil || ok {
		return nil, err
	}
	if moved {
		return field.Forbidden(field.NewPath("spec", "email"),
			"only a Concierge or a platform administrator may change the email of a Concierge: it gives the role to the new address"), nil
	}
	return field.Forbidden(field.NewPath("spec", "role"), "only a Concierge or a platform administrator may grant the Concierge role"), nil
}
