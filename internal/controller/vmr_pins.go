package controller

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/pins"
)

// pinPair is a room's PINs and the Secret they come from. It prints as the
// Secret's name only, so that logging it by mistake reveals nothing.
type pinPair struct {
	secret      string
	host, guest string
	// version is the Secret's resourceVersion.
	version string
}

func (p pinPair) String() string   { return "PINs of Secret " + p.secret }
func (p pinPair) GoString() string { return p.String() }

// withoutBodyLogs returns ctx without its logger, for the API requests that
// carry a PIN Secret: client-go logs the request and response bodies of a
// request, at verbosity 8, with the logger of its context, and a Secret's
// data would reach the logs of an operator run with debug logging.
func withoutBodyLogs(ctx context.Context) context.Context {
	return log.IntoContext(ctx, logr.Discard())
}

// generatedPINSecretName is the Secret the operator creates for a room that
// names none.
func generatedPINSecretName(vmr *v1.VMR) string { return vmr.Name + "-pins" }

// getPINSecret reads a PIN Secret from the cache, which holds only the
// Secrets labelled as PIN Secrets, or else from the API server; a Secret
// found there without the label gets it, so that it is cached and watched
// from then on and a change of its PINs reaches the room at once. A Secret
// that is not the room's to use (mayLabel says) is returned unlabelled.
func (r *VMRReconciler) getPINSecret(ctx context.Context, key client.ObjectKey, mayLabel func(*corev1.Secret) bool) (*corev1.Secret, error) {
	ctx = withoutBodyLogs(ctx)
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret)
	if err == nil || !apierrors.IsNotFound(err) {
		return secret, err
	}
	if err := r.reader().Get(ctx, key, secret); err != nil {
		return nil, err
	}
	if secret.Labels[v1.PINSecretLabel] == "" && mayLabel(secret) {
		before := secret.DeepCopy()
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		secret.Labels[v1.PINSecretLabel] = "true"
		// A merge patch of the label alone: the PINs are not sent back.
		if err := r.Patch(ctx, secret, client.MergeFrom(before)); err != nil {
			return nil, fmt.Errorf("cannot label PIN Secret %q: %w", key.Name, err)
		}
	}
	return secret, nil
}

// roomPINs returns the room's PINs, from the Secret named by spec.pinSecretRef
// or from the one the operator generates. It returns a block when the Secret is
// missing, not the room's, or breaks the PIN rules.
func (r *VMRReconciler) roomPINs(ctx context.Context, vmr *v1.VMR) (pinPair, *roomBlock, error) {
	if ref := vmr.Spec.PINSecretRef; ref != nil {
		named := func(*corev1.Secret) bool { return true } // the room names it
		secret, err := r.getPINSecret(ctx, client.ObjectKey{Namespace: vmr.Namespace, Name: ref.Name}, named)
		switch {
		case apierrors.IsNotFound(err):
			return pinPair{}, &roomBlock{reason: v1.ReasonInvalidPINs, recheck: pinSecretRecheck,
				message: fmt.Sprintf("PIN Secret %q named by spec.pinSecretRef does not exist in namespace %q; create it with keys %s and %s",
					ref.Name, vmr.Namespace, pins.HostPINKey, pins.GuestPINKey)}, nil
		case err != nil:
			return pinPair{}, nil, fmt.Errorf("cannot read PIN Secret %q: %w", ref.Name, err)
		}
		p, b := validPINs(vmr, secret)
		if b != nil {
			b.recheck = pinSecretRecheck
		}
		return p, b, nil
	}

	secret, b, err := r.ensurePINSecret(ctx, vmr)
	if err != nil || b != nil {
		return pinPair{}, b, err
	}
	// The generated Secret may have been edited to rotate the PINs.
	p, b := validPINs(vmr, secret)
	return p, b, nil
}

// validPINs checks the PINs of secret against the rules. The rules' messages
// never carry a PIN, so they go to the status as they are.
func validPINs(vmr *v1.VMR, secret *corev1.Secret) (pinPair, *roomBlock) {
	host, guest := string(secret.Data[pins.HostPINKey]), string(secret.Data[pins.GuestPINKey])
	data := field.NewPath("data")
	errs := pins.ValidatePair(data.Key(pins.HostPINKey), data.Key(pins.GuestPINKey), host, guest,
		vmr.Spec.AllowGuests, field.NewPath("spec", "allowGuests"))
	if len(errs) > 0 {
		return pinPair{}, &roomBlock{reason: v1.ReasonInvalidPINs,
			message: truncate(fmt.Sprintf("PIN Secret %q: %s", secret.Name, errs.ToAggregate().Error()))}
	}
	return pinPair{secret: secret.Name, host: host, guest: guest, version: secret.ResourceVersion}, nil
}

// ensurePINSecret returns the room's generated PIN Secret, creating it when it
// does not exist. Existing PINs are never regenerated: participants know them.
func (r *VMRReconciler) ensurePINSecret(ctx context.Context, vmr *v1.VMR) (*corev1.Secret, *roomBlock, error) {
	name := generatedPINSecretName(vmr)
	if len(validation.IsDNS1123Subdomain(name)) > 0 {
		return nil, &roomBlock{reason: v1.ReasonInvalidPINs,
			message: fmt.Sprintf("the room's name is too long to name its PIN Secret %q; set spec.pinSecretRef", name)}, nil
	}
	key := client.ObjectKey{Namespace: vmr.Namespace, Name: name}
	secret, err := r.getPINSecret(ctx, key, func(s *corev1.Secret) bool { return metav1.IsControlledBy(s, vmr) })
	switch {
	case apierrors.IsNotFound(err):
		if secret, err = r.createPINSecret(ctx, vmr, name); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, fmt.Errorf("cannot read PIN Secret %q: %w", name, err)
	}
	if !metav1.IsControlledBy(secret, vmr) {
		return nil, &roomBlock{reason: v1.ReasonInvalidPINs, message: fmt.Sprintf(
			"Secret %q exists and was not created for this room; name it in spec.pinSecretRef to use its PINs, or remove it", name)}, nil
	}
	return secret, nil, nil
}

// createPINSecret creates the room's PIN Secret with new PINs, owned by the VMR
// so that the garbage collector removes it with the room. A Secret of that name
// already there is returned as it is for the caller to judge.
func (r *VMRReconciler) createPINSecret(ctx context.Context, vmr *v1.VMR, name string) (*corev1.Secret, error) {
	host, guest, err := pins.Generate(0)
	if err != nil {
		return nil, fmt.Errorf("cannot generate PINs: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: vmr.Namespace,
			Labels:    map[string]string{v1.ManagedByLabel: v1.ManagedByValue, v1.PINSecretLabel: "true", vmrLabel: vmr.Name},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{pins.HostPINKey: []byte(host), pins.GuestPINKey: []byte(guest)},
	}
	if err := controllerutil.SetControllerReference(vmr, secret, r.Scheme()); err != nil {
		return nil, fmt.Errorf("cannot make room the owner of PIN Secret %q: %w", name, err)
	}
	err = r.Create(withoutBodyLogs(ctx), secret)
	switch {
	case err == nil:
		r.Recorder.Eventf(vmr, secret, corev1.EventTypeNormal, v1.ReasonPINsGenerated, "Create",
			"Generated host and guest PINs in Secret %s", name)
		return secret, nil
	case apierrors.IsAlreadyExists(err):
		// Missing from the cache: created by an earlier pass the cache has not
		// caught up with. The API server has it.
		existing := &corev1.Secret{}
		if err := r.reader().Get(withoutBodyLogs(ctx), client.ObjectKey{Namespace: vmr.Namespace, Name: name}, existing); err != nil {
			return nil, fmt.Errorf("cannot read PIN Secret %q: %w", name, err)
		}
		return existing, nil
	default:
		// An admission plugin could quote the object it refused.
		return nil, &pinRedactedError{msg: redactPINs(fmt.Sprintf("cannot create PIN Secret %q: %v", name, err), host, guest), err: err}
	}
}
