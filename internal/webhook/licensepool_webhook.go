package webhook

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-tenancy-visio-dev-v1alpha1-licensepool,mutating=false,failurePolicy=fail,sideEffects=None,groups=tenancy.visio.dev,resources=licensepools,verbs=create;update;delete,versions=v1alpha1,name=vlicensepool.tenancy.visio.dev,admissionReviewVersions=v1,timeoutSeconds=10

// LicensePoolValidator keeps pools in entity namespaces and out of the hands
// of the entity's own administrators: more licenses are requested from the
// platform, not self-granted. Of a pool they may change only its
// delegations to their sub-entities.
type LicensePoolValidator struct {
	checker
	reserver *licenseReserver
}

// ValidateCreate checks a new pool.
func (v *LicensePoolValidator) ValidateCreate(ctx context.Context, p *v1.LicensePool) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, p)
}

// ValidateUpdate checks a changed pool and, last, reserves what a raise of
// its delegations takes, so that a change refused for another reason takes
// nothing. Status writes (admission's own reservations, the controller's
// counts) go through the status subresource and are not seen here.
func (v *LicensePoolValidator) ValidateUpdate(ctx context.Context, old, p *v1.LicensePool) (admission.Warnings, error) {
	if err := v.validate(ctx, old, p); err != nil {
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
	return nil, v.refuseEntityAdministrators(ctx, nil, p)
}

// validate checks a new pool (old nil) or a change to one.
func (v *LicensePoolValidator) validate(ctx context.Context, old, p *v1.LicensePool) error {
	_, nsErr, err := v.entityOf(ctx, p.Namespace, "LicensePool")
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if nsErr != nil {
		return apierrors.NewInvalid(v1.GroupVersion.WithKind("LicensePool").GroupKind(), p.Name, field.ErrorList{nsErr})
	}
	return v.refuseEntityAdministrators(ctx, old, p)
}

// refuseEntityAdministrators refuses a change requested by an Administrator of
// the pool's entity who is not a platform administrator, unless it is an
// update (old not nil) of the delegations alone. RBAC gives them update only
// in an entity with children, and the admission policy
// visio-license-pool-delegations holds the rest without this webhook; this
// holds even if someone binds them more widely.
func (v *LicensePoolValidator) refuseEntityAdministrators(ctx context.Context, old, p *v1.LicensePool) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if v.isPlatformAdmin(req.UserInfo) || old != nil && onlyDelegationsChanged(old, p) {
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

var errEntityAdminPool = errors.New("entity administrators may change only spec.delegations of a license pool, not its licenses, grants, enforcement or metadata; ask the platform for more licenses (a LicenseRequest)")

// onlyDelegationsChanged tells an update that leaves everything a person may
// set on a pool as it was, but its delegations: the spec's other fields, the
// labels, annotations, finalizers and owners (the fields the admission policy
// visio-license-pool-delegations compares).
func onlyDelegationsChanged(old, p *v1.LicensePool) bool {
	a, b := old.Spec.DeepCopy(), p.Spec.DeepCopy()
	a.Delegations, b.Delegations = nil, nil
	return equality.Semantic.DeepEqual(a, b) &&
		equality.Semantic.DeepEqual(old.Labels, p.Labels) &&
		equality.Semantic.DeepEqual(old.Annotations, p.Annotations) &&
		equality.Semantic.DeepEqual(old.Finalizers, p.Finalizers) &&
		equality.Semantic.DeepEqual(old.OwnerReferences, p.OwnerReferences)
}
