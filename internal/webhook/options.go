// Package webhook holds the admission checks that the API server's schema and
// CEL rules cannot make because they need other objects (license pools, entity
// namespaces, other users and rooms) or the requesting user.
package webhook

import (
	"context"
	"fmt"
	"slices"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
)

// Options configure the admission checks.
type Options struct {
	// UsernamePrefix is prepended to a PlatformUser's email to form its API
	// server username (the --oidc-username-prefix of the API server).
	UsernamePrefix string
	// PlatformAdminGroups are the groups whose members may do anything,
	// including granting the Concierge role.
	PlatformAdminGroups []string
	// ReservationTTL is how long a license reserved at admission stays reserved
	// for a user that does not appear (operator.Options validated it).
	ReservationTTL time.Duration
	// Clock is the time source (tests replace it).
	Clock clock.PassiveClock
}

// Setup registers every admission webhook with the manager.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	base := checker{Client: mgr.GetClient(), opts: opts}
	users := &PlatformUserValidator{checker: base, reserver: newLicenseReserver(mgr.GetClient(), mgr.GetAPIReader(), opts)}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1.PlatformUser{}).WithValidator(users).Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1.LicensePool{}).WithValidator(&LicensePoolValidator{checker: base}).Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1.Entity{}).WithValidator(&EntityValidator{checker: base, APIReader: mgr.GetAPIReader()}).Complete(); err != nil {
		return err
	}
	return ctrl.NewWebhookManagedBy(mgr, &v1.VMR{}).WithValidator(&VMRValidator{checker: base, APIReader: mgr.GetAPIReader(), claims: newRecentClaims()}).Complete()
}

// checker holds the lookups every validator shares.
type checker struct {
	client.Client
	opts Options
}

// entityOf returns the name of the Entity that owns namespace, or a field error
// on metadata.namespace when the namespace belongs to no entity.
func (c checker) entityOf(ctx context.Context, namespace, kind string) (string, *field.Error, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, ns); client.IgnoreNotFound(err) != nil {
		return "", nil, fmt.Errorf("cannot read namespace %q: %w", namespace, err)
	}
	owner := metav1.GetControllerOf(ns)
	name := ns.Labels[v1.EntityLabel]
	if name == "" || owner == nil || owner.Kind != "Entity" || owner.Name != name {
		return "", field.Forbidden(field.NewPath("metadata", "namespace"), fmt.Sprintf(
			"namespace %q belongs to no entity: %ss live in an entity's namespace (kubectl get entities shows them)", namespace, kind)), nil
	}
	return name, nil, nil
}

// isPlatformAdmin reports whether the requester belongs to a platform admin group.
func (c checker) isPlatformAdmin(u authnv1.UserInfo) bool {
	for _, g := range u.Groups {
		if slices.Contains(c.opts.PlatformAdminGroups, g) {
			return true
		}
	}
	return false
}

// usersOfRequester returns the PlatformUsers the requester is, by username
// (prefix + email), across all entities.
func (c checker) usersOfRequester(ctx context.Context, u authnv1.UserInfo) ([]v1.PlatformUser, error) {
	email, ok := stripPrefix(u.Username, c.opts.UsernamePrefix)
	if !ok {
		return nil, nil
	}
	list := &v1.PlatformUserList{}
	if err := c.List(ctx, list, client.MatchingFields{index.UserEmail: email}); err != nil {
		return nil, fmt.Errorf("cannot look up the requesting user: %w", err)
	}
	return list.Items, nil
}

// isConcierge reports whether the requester is a Concierge PlatformUser.
func (c checker) isConcierge(ctx context.Context, u authnv1.UserInfo) (bool, error) {
	users, err := c.usersOfRequester(ctx, u)
	if err != nil {
		return false, err
	}
	for i := range users {
		if users[i].RoleOrDefault() == v1.RoleConcierge && users[i].DeletionTimestamp.IsZero() {
			return true, nil
		}
	}
	return false, nil
}

func stripPrefix(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return "", false
	}
	return s[len(prefix):], true
}
