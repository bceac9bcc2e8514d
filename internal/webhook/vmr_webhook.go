package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/pins"
)

// +kubebuilder:webhook:path=/validate-tenancy-visio-dev-v1alpha1-vmr,mutating=false,failurePolicy=fail,sideEffects=None,groups=tenancy.visio.dev,resources=vmrs,verbs=create;update,versions=v1alpha1,name=vvmr.tenancy.visio.dev,admissionReviewVersions=v1,timeoutSeconds=10

// VMRValidator checks what the schema cannot: the entity namespace, numeric
// ids and aliases unique across the whole platform, and the PINs of a given
// Secret.
type VMRValidator struct {
	checker
	// APIReader reads the PIN Secret directly: the operator does not cache
	// Secrets it did not create.
	APIReader client.Reader
	claims    *recentClaims
}

var vmrGK = v1.GroupVersion.WithKind("VMR").GroupKind()

// ValidateCreate checks a new room.
func (v *VMRValidator) ValidateCreate(ctx context.Context, r *v1.VMR) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, r)
}

// ValidateUpdate checks a changed room.
func (v *VMRValidator) ValidateUpdate(ctx context.Context, old, r *v1.VMR) (admission.Warnings, error) {
	return nil, v.validate(ctx, old, r)
}

// ValidateDelete allows every deletion.
func (v *VMRValidator) ValidateDelete(context.Context, *v1.VMR) (admission.Warnings, error) {
	return nil, nil
}

func (v *VMRValidator) validate(ctx context.Context, old, r *v1.VMR) error {
	_, nsErr, err := v.entityOf(ctx, r.Namespace, "VMR")
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if nsErr != nil {
		return apierrors.NewInvalid(vmrGK, r.Name, field.ErrorList{nsErr})
	}
	spec := field.NewPath("spec")
	var errs field.ErrorList

	self := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	check := func(path *field.Path, s string) error {
		others := &v1.VMRList{}
		if err := v.List(ctx, others, client.MatchingFields{index.VMRDialString: s}); err != nil {
			return err
		}
		for i := range others.Items {
			if o := client.ObjectKeyFromObject(&others.Items[i]); o != self {
				errs = append(errs, duplicate(path, s, fmt.Sprintf("already used by VMR %s", o)))
				return nil
			}
		}
		if other, taken := v.claims.claim(s, self, time.Now()); taken {
			errs = append(errs, duplicate(path, s, fmt.Sprintf("being claimed by VMR %s", other)))
		}
		return nil
	}
	if r.Spec.NumericID != "" && (old == nil || old.Spec.NumericID != r.Spec.NumericID) {
		if err := check(spec.Child("numericId"), r.Spec.NumericID); err != nil {
			return apierrors.NewInternalError(err)
		}
	}
	for i, a := range r.Spec.Aliases {
		if err := check(spec.Child("aliases").Index(i), a); err != nil {
			return apierrors.NewInternalError(err)
		}
	}

	if ref := r.Spec.PINSecretRef; ref != nil {
		secret := &corev1.Secret{}
		err := v.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: ref.Name}, secret)
		switch {
		case apierrors.IsNotFound(err):
			// Allowed: GitOps may apply the Secret after the room; the room
			// waits with InvalidPINs until it exists.
		case err != nil:
			return apierrors.NewInternalError(fmt.Errorf("cannot read PIN Secret %q: %w", ref.Name, err))
		default:
			data := field.NewPath("spec", "pinSecretRef").Child("name")
			errs = append(errs, pins.ValidatePair(data.Key(pins.HostPINKey), data.Key(pins.GuestPINKey),
				string(secret.Data[pins.HostPINKey]), string(secret.Data[pins.GuestPINKey]), r.Spec.AllowGuests, spec.Child("allowGuests"))...)
		}
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(vmrGK, r.Name, errs)
	}
	return nil
}

func duplicate(path *field.Path, value, detail string) *field.Error {
	e := field.Duplicate(path, value)
	e.Detail = detail
	return e
}

// recentClaims closes the window in which two rooms admitted at the same time
// claim the same number or alias before either reaches the cache. A claim is
// held for claimWindow, longer than the cache takes to catch up; what still
// slips through (another replica) the controller reports as AliasConflict.
type recentClaims struct {
	mu     sync.Mutex
	claims map[string]claim
}

type claim struct {
	by types.NamespacedName
	at time.Time
}

const claimWindow = 10 * time.Second

func newRecentClaims() *recentClaims { return &recentClaims{claims: map[string]claim{}} }

// claim records that by claims s, or returns who claimed it first.
func (c *recentClaims) claim(s string, by types.NamespacedName, now time.Time) (types.NamespacedName, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cl := range c.claims {
		if now.Sub(cl.at) > claimWindow {
			delete(c.claims, k)
		}
	}
	if cl, ok := c.claims[s]; ok && cl.by != by {
		return cl.by, true
	}
	c.claims[s] = claim{by: by, at: now}
	return types.NamespacedName{}, false
}
