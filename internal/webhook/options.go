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
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/entityns"
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
	// PlatformEntity names the Entity whose namespace holds the Concierges:
	// the role is valid there only.
	PlatformEntity string
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
	base := checker{Client: mgr.GetClient(), opts: opts, live: mgr.GetAPIReader()}
	// One reserver for users and pools: an activation and a raise of a
	// delegation in the same pool are decided in the same rounds.
	reserver := newLicenseReserver(mgr.GetClient(), mgr.GetAPIReader(), opts)
	users := &PlatformUserValidator{checker: base, reserver: reserver}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1.PlatformUser{}).WithValidator(users).Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1.LicensePool{}).WithValidator(&LicensePoolValidator{checker: base, reserver: reserver}).Complete(); err != nil {
		return err
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &v1.LicenseRequest{}).WithValidator(&LicenseRequestValidator{checker: base}).Complete(); err != nil {
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
	// live reads from the API server, past the cache.
	live client.Reader
}

// entityOf returns the name of the Entity that owns namespace, or a field error
// on metadata.namespace when the namespace belongs to no entity. The rule is
// entityns's, the one the controllers apply: a namespace dressed up with an
// entity's label and owner reference is not that entity's.
func (c checker) entityOf(ctx context.Context, namespace, kind string) (string, *field.Error, error) {
	e, _, err := entityns.Of(ctx, c.Client, namespace)
	if err == nil && e == nil && c.live != nil {
		// The cache may not show yet an Entity's status.namespace recorded a
		// moment before its namespace: ask the API server before refusing.
		e, _, err = entityns.Of(ctx, c.live, namespace)
	}
	if err != nil {
		return "", nil, err
	}
	if e == nil {
		return "", field.Forbidden(field.NewPath("metadata", "namespace"), fmt.Sprintf(
			"namespace %q belongs to no entity: %ss live in an entity's namespace (kubectl get entities shows them)", namespace, kind)), nil
	}
	return e.Name, nil, nil
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
	address, ok := stripPrefix(u.Username, c.opts.UsernamePrefix)
	if !ok {
		return nil, nil
	}
	// The operator binds the canonical form of a user's email: the index
	// holds that form, and so does a username RBAC recognises.
	list := &v1.PlatformUserList{}
	if err := c.List(ctx, list, client.MatchingFields{index.UserEmail: address}); err != nil {
		return nil, fmt.Errorf("cannot look up the requesting user: %w", err)
	}
	return list.Items, nil
}

// isConcierge reports whether the requester is a Concierge PlatformUser of the
// platform entity: a user carrying the role anywhere else (admission was not
// called when it was made) is no Concierge, and may grant nothing.
func (c checker) isConcierge(ctx context.Context, u authnv1.UserInfo) (bool, error) {
	users, err := c.usersOfRequester(ctx, u)
	if err != nil {
		return false, err
	}
	platformNS := ""
	for i := range users {
		if users[i].RoleOrDefault() != v1.RoleConcierge || !users[i].DeletionTimestamp.IsZero() {
			continue
		}
		if platformNS == "" {
			if platformNS, err = entityns.NamespaceOf(ctx, c.Client, c.opts.PlatformEntity); err != nil || platformNS == "" {
				return false, err
			}
		}
		if users[i].Namespace == platformNS {
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
