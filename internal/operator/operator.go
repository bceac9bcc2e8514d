// Package operator wires the controllers and admission webhooks into a
// manager. cmd/ and the integration tests both call Setup, so the tests run
// exactly what ships.
package operator

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/controller"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/webhook"
)

// Options is the operator's configuration, set from flags.
type Options struct {
	// UsernamePrefix is prepended to a PlatformUser's email to form its RBAC
	// subject; it matches the API server's --oidc-username-prefix.
	UsernamePrefix string
	// PlatformAdminGroups may do anything, including granting Concierge.
	PlatformAdminGroups []string
	// ReservationTTL is how long a license reserved at admission waits for its user.
	ReservationTTL time.Duration
	// MaxConcurrentReconciles bounds parallel work per controller.
	MaxConcurrentReconciles int

	// Backend provisions the rooms.
	Backend backend.Backend
	// NumericIDMin and NumericIDMax bound generated room numbers.
	NumericIDMin, NumericIDMax uint64
	// JoinBaseURL and SIPDomain build the join URL and SIP URI of rooms.
	JoinBaseURL, SIPDomain string
	// DriftCheckInterval is how often a Ready room is compared with the backend.
	DriftCheckInterval time.Duration
	// BackendTimeout bounds each backend call.
	BackendTimeout time.Duration

	// DisableWebhooks runs the controllers alone (the controllers stay correct
	// without admission; tests use it to prove that).
	DisableWebhooks bool
	// Clock is the time source (tests replace it).
	Clock clock.PassiveClock
}

// CacheOptions limits what the manager caches. Secrets hold PINs and every
// other credential of the cluster: the cache keeps only the PIN Secrets, those
// the operator generates and those named by a room's spec.pinSecretRef, which
// the operator labels when it first reads them from the API server. This
// bounds memory on large clusters, keeps other teams' credentials out of the
// operator's process, and still lets a PIN change reach its room at once.
func CacheOptions() cache.Options {
	pinSecrets, err := labels.NewRequirement(v1.PINSecretLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key
	}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: labels.NewSelector().Add(*pinSecrets)},
	}}
}

// Setup registers the cache indexes, the controllers and the webhooks.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("cannot register cache indexes: %w", err)
	}
	rbac := controller.RBACOptions{UsernamePrefix: o.UsernamePrefix}
	recorder := func(name string) controller.EventRecorder { return mgr.GetEventRecorder(name) }
	setups := []interface{ SetupWithManager(ctrl.Manager) error }{
		&controller.EntityReconciler{Client: mgr.GetClient(), Recorder: recorder("entity-controller"), RBAC: rbac},
		&controller.ConciergeReconciler{Client: mgr.GetClient(), RBAC: rbac},
		&controller.LicensePoolReconciler{Client: mgr.GetClient(), Recorder: recorder("licensepool-controller"), Clock: o.Clock,
			ReservationTTL: o.ReservationTTL, MaxConcurrentReconciles: o.MaxConcurrentReconciles},
		&controller.VMRReconciler{Client: mgr.GetClient(), Recorder: recorder("vmr-controller"), Backend: o.Backend,
			NumericIDMin: o.NumericIDMin, NumericIDMax: o.NumericIDMax, JoinBaseURL: o.JoinBaseURL, SIPDomain: o.SIPDomain,
			DriftCheckInterval: o.DriftCheckInterval, BackendTimeout: o.BackendTimeout, MaxConcurrentReconciles: o.MaxConcurrentReconciles},
	}
	for _, s := range setups {
		if err := s.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("cannot set up %T: %w", s, err)
		}
	}
	if o.DisableWebhooks {
		return nil
	}
	return webhook.Setup(mgr, webhook.Options{
		UsernamePrefix: o.UsernamePrefix, PlatformAdminGroups: o.PlatformAdminGroups,
		ReservationTTL: o.ReservationTTL, Clock: o.Clock,
	})
}

// The manager's own needs beyond its controllers: leader election, metrics
// authentication and authorisation.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
