package webhook

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/pins"
	"visio.dev/operator/internal/rooms"
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

// validate checks what the request changes, and only that: an update that
// leaves the dial strings and PINs as they were (adding or removing a
// finalizer, a label) is never refused for a state that admission let in
// earlier or that arose since (a PIN Secret applied after its room), or the
// room could never be finalized or deleted.
func (v *VMRValidator) validate(ctx context.Context, old, r *v1.VMR) error {
	if old == nil {
		_, nsErr, err := v.entityOf(ctx, r.Namespace, "VMR")
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if nsErr != nil {
			return apierrors.NewInvalid(vmrGK, r.Name, field.ErrorList{nsErr})
		}
	}
	self := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	claims := newDialStrings(old, r)
	var errs field.ErrorList
	for _, d := range claims {
		holder, err := v.holder(ctx, self, d.value)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if holder != nil {
			errs = append(errs, duplicate(d.path, d.value, fmt.Sprintf("already used by VMR %s", holder)))
		}
	}
	if pinsChanged(old, r) {
		pinErrs, err := v.checkPINSecret(ctx, r)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		errs = append(errs, pinErrs...)
	}
	// Claimed only by a request that is admitted and stored: a refused or
	// dry-run request must not keep a value from others.
	if len(errs) == 0 && !isDryRun(ctx) {
		errs = v.claims.claimAll(claims, self, time.Now())
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(vmrGK, r.Name, errs)
	}
	return nil
}

// dialString is a numeric id or alias a request claims, with its field.
type dialString struct {
	path  *field.Path
	value string
}

// newDialStrings lists the numeric id and aliases r claims that old did not.
func newDialStrings(old, r *v1.VMR) []dialString {
	spec := field.NewPath("spec")
	var out []dialString
	if r.Spec.NumericID != "" && (old == nil || old.Spec.NumericID != r.Spec.NumericID) {
		out = append(out, dialString{spec.Child("numericId"), r.Spec.NumericID})
	}
	for i, a := range r.Spec.Aliases {
		if old == nil || !slices.Contains(old.Spec.Aliases, a) {
			out = append(out, dialString{spec.Child("aliases").Index(i), a})
		}
	}
	return out
}

// holder returns another VMR that claims value (given or generated), or
// holds it (its DialStringClaim, which also covers the SIP aliases the
// operator provisions), or nil.
func (v *VMRValidator) holder(ctx context.Context, self types.NamespacedName, value string) (*types.NamespacedName, error) {
	others := &v1.VMRList{}
	if err := v.List(ctx, others, client.MatchingFields{index.VMRDialString: value}); err != nil {
		return nil, err
	}
	for i := range others.Items {
		if o := client.ObjectKeyFromObject(&others.Items[i]); o != self {
			return &o, nil
		}
	}
	claim := &v1.DialStringClaim{}
	err := v.Get(ctx, client.ObjectKey{Name: rooms.ClaimName(value)}, claim)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	h := types.NamespacedName{Namespace: claim.Spec.VMR.Namespace, Name: claim.Spec.VMR.Name}
	if h == self || claim.Spec.DialString != value {
		return nil, nil
	}
	// A claim whose room is gone is stale: the controller replaces it.
	room := &v1.VMR{}
	if err := v.Get(ctx, h, room); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if string(room.UID) != claim.Spec.VMR.UID {
		return nil, nil
	}
	return &h, nil
}

// pinsChanged reports whether the request changes what the PIN Secret must
// satisfy: which Secret it is, or whether guests are allowed.
func pinsChanged(old, r *v1.VMR) bool {
	if r.Spec.PINSecretRef == nil {
		return false
	}
	return old == nil || old.Spec.PINSecretRef == nil || old.Spec.PINSecretRef.Name != r.Spec.PINSecretRef.Name ||
		old.Spec.AllowGuests != r.Spec.AllowGuests
}

// checkPINSecret checks the PINs of the Secret r names. A missing Secret is
// allowed: GitOps may apply it after the room, which waits with InvalidPINs
// until it exists.
func (v *VMRValidator) checkPINSecret(ctx context.Context, r *v1.VMR) (field.ErrorList, error) {
	ref := r.Spec.PINSecretRef
	secret := &corev1.Secret{}
	// Without the request's logger: client-go logs response bodies with it
	// at verbosity 8, and this one holds the PINs.
	err := v.APIReader.Get(logf.IntoContext(ctx, logr.Discard()), client.ObjectKey{Namespace: r.Namespace, Name: ref.Name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("cannot read PIN Secret %q: %w", ref.Name, err)
	}
	data := field.NewPath("spec", "pinSecretRef").Child("name")
	return pins.ValidatePair(data.Key(pins.HostPINKey), data.Key(pins.GuestPINKey),
		string(secret.Data[pins.HostPINKey]), string(secret.Data[pins.GuestPINKey]),
		r.Spec.AllowGuests, field.NewPath("spec", "allowGuests")), nil
}

// isDryRun reports whether the admission request will not be stored.
func isDryRun(ctx context.Context) bool {
	req, err := admission.RequestFromContext(ctx)
	return err == nil && req.DryRun != nil && *req.DryRun
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

// claimAll records that by claims every value of claims, or, when another
// room claimed one of them first, records nothing and returns the errors.
func (c *recentClaims) claimAll(claims []dialString, by types.NamespacedName, now time.Time) field.ErrorList {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cl := range c.claims {
		if now.Sub(cl.at) > claimWindow {
			delete(c.claims, k)
		}
	}
	var errs field.ErrorList
	for _, d := range claims {
		if cl, ok := c.claims[d.value]; ok && cl.by != by {
			errs = append(errs, duplicate(d.path, d.value, fmt.Sprintf("being claimed by VMR %s", cl.by)))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	for _, d := range claims {
		c.claims[d.value] = claim{by: by, at: now}
	}
	return nil
}
