// Package index declares the field indexes of the shared cache, used by the
// controllers and the admission webhooks alike.
package index

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/email"
)

// Field indexes on the shared cache. Controllers and webhooks look objects up
// through them instead of listing and filtering.
const (
	// UserPool indexes PlatformUsers by the pool they name (spec) and the
	// pool they hold a license in (status), so that a pool's reconcile sees the
	// users that moved away but still hold one of its licenses.
	UserPool = "tenancy.visio.dev/user-pool"
	// UserEmail indexes PlatformUsers by email in its canonical form
	// (email.Canonical), for uniqueness in an entity: look up with that form.
	UserEmail = "tenancy.visio.dev/user-email"
	// UserRole indexes PlatformUsers by role (for the Concierge binding).
	UserRole = "tenancy.visio.dev/user-role"
	// VMRDialString indexes VMRs by numeric id and aliases, given and in use,
	// for platform-wide uniqueness.
	VMRDialString = "tenancy.visio.dev/vmr-dial-string"
	// VMROwner indexes VMRs by owner, so a room follows its owner's license.
	VMROwner = "tenancy.visio.dev/vmr-owner"
	// EntityNamespace indexes Entities by the namespace they ask for
	// (spec.namespace or its default), so that a namespace event reaches the
	// Entity waiting for that name.
	EntityNamespace = "tenancy.visio.dev/entity-namespace"
	// EntityParent indexes Entities by spec.parent, so that an Entity finds
	// its sub-entities and a change of a parent reaches them. Its name is the
	// CRD's selectable field, so the same MatchingFields lists from the cache
	// and, past it, from the API server.
	EntityParent = v1.ParentFieldSelector
	// VMRPINSecret indexes VMRs by the Secret holding their PINs (named by
	// spec.pinSecretRef, or generated), so that a PIN change reaches the room.
	VMRPINSecret = "tenancy.visio.dev/vmr-pin-secret"
	// ClaimVMR indexes DialStringClaims by the UID of the VMR holding them,
	// so that a room finds its own claims without going through the
	// platform's: claims are cluster-wide, and a label selector on the
	// cache reads every one of them, for every room, at every pass.
	ClaimVMR = "tenancy.visio.dev/claim-vmr"
	// RequestPool indexes LicenseRequests by the pool they ask licenses of,
	// so that a pool's recount finds its requests and a pool event its
	// requests' reconciles.
	RequestPool = "tenancy.visio.dev/request-pool"
)

// Setup registers the field indexes on the manager's cache.
func Setup(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &v1.PlatformUser{}, UserPool, func(o client.Object) []string {
		u := o.(*v1.PlatformUser)
		pools := []string{u.PoolName()}
		if held := u.Status.LicensePool; held != "" && held != u.PoolName() {
			pools = append(pools, held)
		}
		return pools
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.PlatformUser{}, UserEmail, func(o client.Object) []string {
		return []string{email.Canonical(o.(*v1.PlatformUser).Spec.Email)}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.PlatformUser{}, UserRole, func(o client.Object) []string {
		return []string{string(o.(*v1.PlatformUser).RoleOrDefault())}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.LicenseRequest{}, RequestPool, func(o client.Object) []string {
		return []string{o.(*v1.LicenseRequest).PoolName()}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.Entity{}, EntityNamespace, func(o client.Object) []string {
		return []string{o.(*v1.Entity).NamespaceName()}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.Entity{}, EntityParent, func(o client.Object) []string {
		if p := o.(*v1.Entity).Spec.Parent; p != "" {
			return []string{p}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.VMR{}, VMRDialString, func(o client.Object) []string {
		return DialStrings(o.(*v1.VMR))
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.VMR{}, VMRPINSecret, func(o client.Object) []string {
		return []string{PINSecretName(o.(*v1.VMR))}
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &v1.DialStringClaim{}, ClaimVMR, ClaimHolder); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &v1.VMR{}, VMROwner, func(o client.Object) []string {
		if owner := o.(*v1.VMR).Spec.Owner; owner != "" {
			return []string{owner}
		}
		return nil
	})
}

// DialStrings are the numeric id and aliases a VMR claims: those of its spec
// and those it holds in status (a generated numeric id), without duplicates.
func DialStrings(v *v1.VMR) []string {
	out := make([]string, 0, 2+len(v.Spec.Aliases))
	add := func(s string) {
		if s == "" {
			return
		}
		for _, have := range out {
			if have == s {
				return
			}
		}
		out = append(out, s)
	}
	add(v.Spec.NumericID)
	add(v.Status.NumericID)
	for _, a := range v.Spec.Aliases {
		add(a)
	}
	return out
}

// ClaimHolder is the ClaimVMR index of a DialStringClaim: the UID of the
// VMR holding it.
func ClaimHolder(o client.Object) []string {
	return []string{o.(*v1.DialStringClaim).Spec.VMR.UID}
}

// PINSecretName is the Secret holding a VMR's PINs: the one its spec names,
// or the one the operator generates, <name>-pins.
func PINSecretName(v *v1.VMR) string {
	if ref := v.Spec.PINSecretRef; ref != nil {
		return ref.Name
	}
	return v.Name + "-pins"
}
