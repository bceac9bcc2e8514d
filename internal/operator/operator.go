// Package operator wires the controllers and admission webhooks into a
// manager. cmd/ and the integration tests both call Setup, so the tests run
// exactly what ships.
package operator

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	"visio.dev/operator/internal/metrics"
	"visio.dev/operator/internal/webhook"
)

// Options is the operator's configuration, set from flags (BindFlags) and
// checked once (Validate) before anything uses it.
type Options struct {
	// PlatformEntity names the Entity whose namespace holds the Concierges.
	PlatformEntity string
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
	// NumericIDs bounds generated room numbers.
	NumericIDs NumericIDRange
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

// CacheOptions limits what the manager caches to the objects the operator
// manages: entity namespaces (labelled with their entity), the PIN Secrets
// (those it generates and those named by a room's spec.pinSecretRef, which it
// labels when it first reads them from the API server, so that a PIN change
// reaches its room at once), and the RoleBindings, ClusterRoles and
// ClusterRoleBindings it creates (labelled managed-by). Secrets hold every
// other credential of the cluster; the rest would grow with every namespace
// and role of a large cluster. What a controller needs beyond that (a
// namespace or binding of the same name as one the operator wants to create)
// is read from the API server when needed.
func CacheOptions() cache.Options {
	managed := labels.SelectorFromSet(labels.Set{v1.ManagedByLabel: v1.ManagedByValue})
	entityNamespaces, err := labels.NewRequirement(v1.EntityLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant key: cannot fail
	}
	pinSecrets, err := labels.NewRequirement(v1.PINSecretLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant key: cannot fail
	}
	return cache.Options{
		// managedFields are for server-side apply, which the operator does
		// not read; they are a third of a user's size in memory, and the
		// cache holds every user of every entity.
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:             {Label: labels.NewSelector().Add(*pinSecrets)},
			&corev1.Namespace{}:          {Label: labels.NewSelector().Add(*entityNamespaces)},
			&rbacv1.RoleBinding{}:        {Label: managed},
			&rbacv1.ClusterRole{}:        {Label: managed},
			&rbacv1.ClusterRoleBinding{}: {Label: managed},
		}}
}

// Setup registers the cache indexes, the controllers and the webhooks.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("cannot register cache indexes: %w", err)
	}
	if err := metrics.ForgetDeleted(ctx, mgr.GetCache()); err != nil {
		return err
	}
	rbac := controller.RBACOptions{UsernamePrefix: o.UsernamePrefix}
	recorder := func(name string) controller.EventRecorder { return mgr.GetEventRecorder(name) }
	setups := []interface{ SetupWithManager(ctrl.Manager) error }{
		&controller.EntityReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder("entity-controller"),
			RBAC: rbac, PlatformEntity: o.PlatformEntity},
		&controller.ConciergeReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), RBAC: rbac, PlatformEntity: o.PlatformEntity},
		&controller.LicensePoolReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder("licensepool-controller"), Clock: o.Clock,
			PlatformEntity: o.PlatformEntity,
			ReservationTTL: o.ReservationTTL, MaxConcurrentReconciles: o.MaxConcurrentReconciles},
		&controller.LicenseRequestReconciler{Client: mgr.GetClient(), Recorder: recorder("licenserequest-controller"), Clock: o.Clock},
		&controller.VMRReconciler{Client: mgr.GetClient(), Recorder: recorder("vmr-controller"), Backend: o.Backend,
			NumericIDMin: o.NumericIDs.Min, NumericIDMax: o.NumericIDs.Max, JoinBaseURL: o.JoinBaseURL, SIPDomain: o.SIPDomain,
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
	return webhook.Setup(mgr, o.WebhookOptions())
}

// WebhookOptions are the settings of the admission webhooks, taken from o:
// the one place where they are handed down.
func (o Options) WebhookOptions() webhook.Options {
	return webhook.Options{
		UsernamePrefix: o.UsernamePrefix, PlatformAdminGroups: o.PlatformAdminGroups, PlatformEntity: o.PlatformEntity,
		ReservationTTL: o.ReservationTTL, Clock: o.Clock,
	}
}

// The manager's own needs beyond its controllers: metrics authentication and
// authorisation. Leader election needs leases in the manager's own namespace
// only: config/rbac/leader_election_role.yaml, a Role there, not this
// ClusterRole.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
