package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
)

// licenseReserver admits a user into a Deny pool only if a license is free,
// and reserves that license on the pool so that concurrent admissions see it.
//
// It follows the Kubernetes ResourceQuota admission design: the pool's status
// is the ledger, read fresh from the API server and written back with its
// resourceVersion, so that of two admissions racing for the last license one
// gets a Conflict, re-reads, and is refused. A per-pool lock serialises the
// admissions this replica handles, so the conflicts (and their retries) only
// happen between replicas, and a burst of N requests costs N writes, not N².
type licenseReserver struct {
	cache  client.Client // users (the cache shares the controllers' view)
	reader client.Reader // pools, read from the API server
	opts   Options

	mu    sync.Mutex
	locks map[types.NamespacedName]*sync.Mutex
}

func newLicenseReserver(c client.Client, reader client.Reader, opts Options) *licenseReserver {
	return &licenseReserver{cache: c, reader: reader, opts: opts, locks: map[types.NamespacedName]*sync.Mutex{}}
}

func (r *licenseReserver) lock(key types.NamespacedName) func() {
	r.mu.Lock()
	l := r.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		r.locks[key] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// maxReserveAttempts bounds the re-reads after a Conflict with another replica
// or with the controller's status write.
const maxReserveAttempts = 8

// reserve returns a field error when the user cannot be activated in its pool,
// and otherwise records a reservation (unless dryRun).
func (r *licenseReserver) reserve(ctx context.Context, u *v1.PlatformUser, entity string, dryRun bool) (*field.Error, error) {
	key := types.NamespacedName{Namespace: u.Namespace, Name: u.PoolName()}
	defer r.lock(key)()
	poolPath := field.NewPath("spec", "licensePool")

	for attempt := 0; ; attempt++ {
		pool := &v1.LicensePool{}
		if err := r.reader.Get(ctx, key, pool); err != nil {
			if apierrors.IsNotFound(err) {
				return field.NotFound(poolPath, fmt.Sprintf("license pool %q of entity %q", key.Name, entity)), nil
			}
			return nil, fmt.Errorf("cannot read license pool %q: %w", key.Name, err)
		}
		if pool.EnforcementOrDefault() == v1.EnforcementQueue {
			return nil, nil // admitted; the user waits for a license if none is free
		}
		now := r.opts.Clock.Now()
		capacity, _ := pool.CapacityAt(now)
		held, err := r.holders(ctx, pool, u.Name, now)
		if err != nil {
			return nil, err
		}
		if int32(len(held)) >= capacity {
			return field.Forbidden(poolPath, fmt.Sprintf(
				"license pool %q of entity %q is full: %d/%d licenses used; deactivate a user or request more licenses",
				key.Name, entity, len(held), capacity)), nil
		}
		if dryRun {
			return nil, nil
		}
		setReservation(pool, u.Name, metav1.NewTime(now))
		err = r.cache.Status().Update(ctx, pool)
		if err == nil {
			return nil, nil
		}
		if !apierrors.IsConflict(err) || attempt+1 >= maxReserveAttempts {
			return nil, fmt.Errorf("cannot reserve a license in pool %q: %w", key.Name, err)
		}
	}
}

// holders are the names holding or promised a license of pool, other than
// user: active users of the pool as the cache knows them, and the unexpired
// reservations for users the cache does not show yet. Under Deny every active
// user counts, licensed or not, since each one was admitted against a license.
func (r *licenseReserver) holders(ctx context.Context, pool *v1.LicensePool, user string, now time.Time) (map[string]struct{}, error) {
	users := &v1.PlatformUserList{}
	if err := r.cache.List(ctx, users, client.InNamespace(pool.Namespace), client.MatchingFields{index.UserPool: pool.Name}); err != nil {
		return nil, fmt.Errorf("cannot list users of license pool %q: %w", pool.Name, err)
	}
	held := make(map[string]struct{}, len(users.Items)+len(pool.Status.Reservations))
	for i := range users.Items {
		if users.Items[i].Name != user && users.Items[i].WantsLicenseIn(pool.Name) {
			held[users.Items[i].Name] = struct{}{}
		}
	}
	for _, res := range pool.Status.Reservations {
		if res.User != user && now.Before(res.ReservedAt.Add(r.opts.ReservationTTL)) {
			held[res.User] = struct{}{}
		}
	}
	return held, nil
}

// setReservation records (or renews) the reservation for user.
func setReservation(pool *v1.LicensePool, user string, at metav1.Time) {
	for i := range pool.Status.Reservations {
		if pool.Status.Reservations[i].User == user {
			pool.Status.Reservations[i].ReservedAt = at
			return
		}
	}
	pool.Status.Reservations = append(pool.Status.Reservations, v1.LicenseReservation{User: user, ReservedAt: at})
}
