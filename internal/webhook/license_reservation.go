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
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/metrics"
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

// reserveBackoff paces the re-reads after a Conflict, which come from other
// replicas and from the controller writing the pool's counts. A burst keeps
// the controller writing, so a few conflicts in a row are normal: the steps
// add up to about five seconds, within the webhook's ten-second timeout.
var reserveBackoff = wait.Backoff{Steps: 16, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5, Cap: time.Second}

// reserve returns a field error when the user cannot be activated in its pool,
// and otherwise records a reservation (unless dryRun).
// generation is the generation u will have once stored.
func (r *licenseReserver) reserve(ctx context.Context, u *v1.PlatformUser, generation int64, entity string, dryRun bool) (refusal *field.Error, err error) {
	key := types.NamespacedName{Namespace: u.Namespace, Name: u.PoolName()}
	defer func() { countAdmission(key, entity, dryRun, refusal, err) }()
	// A Queue pool admits everyone: its users wait for a license instead. The
	// cached copy is enough to tell, which spares a burst into a Queue pool
	// the live read and the per-pool lock. A pool switched to Deny a moment
	// ago may still look like Queue here; the controller stays the authority.
	cached := &v1.LicensePool{}
	if err := r.cache.Get(ctx, key, cached); err == nil && cached.EnforcementOrDefault() == v1.EnforcementQueue {
		return nil, nil
	}
	defer r.lock(key)()
	err = retry.OnError(reserveBackoff, apierrors.IsConflict, func() error {
		var err error
		refusal, err = r.tryReserve(ctx, key, u.Name, generation, entity, dryRun)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot reserve a license in pool %q: %w", key.Name, err)
	}
	return refusal, nil
}

// tryReserve makes one attempt on a fresh copy of the pool; a Conflict error
// means the pool changed under it and the attempt may be repeated.
func (r *licenseReserver) tryReserve(ctx context.Context, key types.NamespacedName, user string, generation int64, entity string, dryRun bool) (*field.Error, error) {
	poolPath := field.NewPath("spec", "licensePool")
	pool := &v1.LicensePool{}
	if err := r.reader.Get(ctx, key, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return field.Invalid(poolPath, key.Name, fmt.Sprintf(
				"license pool %q of entity %q does not exist; name an existing pool or ask for one to be created", key.Name, entity)), nil
		}
		return nil, fmt.Errorf("cannot read license pool %q: %w", key.Name, err)
	}
	if pool.EnforcementOrDefault() == v1.EnforcementQueue {
		return nil, nil // admitted; the user waits for a license if none is free
	}
	now := r.opts.Clock.Now()
	capacity, _ := pool.CapacityAt(now)
	held, err := r.holders(ctx, pool, user, now)
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
	setReservation(pool, v1.LicenseReservation{User: user, ReservedAt: metav1.NewTime(now), Generation: generation})
	return nil, r.cache.Status().Update(ctx, pool)
}

// holders are the names holding or promised a license of pool, other than
// user: active users of the pool as the cache knows them, and the unexpired
// reservations the cache does not yet account for. Under Deny every active
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
		if res.User == user || !now.Before(res.ReservedAt.Add(r.opts.ReservationTTL)) {
			continue
		}
		covered, err := r.covered(ctx, pool.Namespace, res)
		if err != nil {
			return nil, err
		}
		if !covered {
			held[res.User] = struct{}{}
		}
	}
	return held, nil
}

// covered tells whether the cache shows the reservation's user at the
// generation the reservation was made for, or later: from then on the user's
// own state counts (and a user deactivated since frees its license at once).
func (r *licenseReserver) covered(ctx context.Context, namespace string, res v1.LicenseReservation) (bool, error) {
	u := &v1.PlatformUser{}
	if err := r.cache.Get(ctx, types.NamespacedName{Namespace: namespace, Name: res.User}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("cannot read user %q: %w", res.User, err)
	}
	return res.CoveredBy(u.Generation), nil
}

// setReservation records res, replacing an earlier reservation for its user.
func setReservation(pool *v1.LicensePool, res v1.LicenseReservation) {
	for i := range pool.Status.Reservations {
		if pool.Status.Reservations[i].User == res.User {
			pool.Status.Reservations[i] = res
			return
		}
	}
	pool.Status.Reservations = append(pool.Status.Reservations, res)
}

// countAdmission counts what admission decided about a license: admitted, or
// refused because the pool was full. Not counted: dry runs (they take no
// license and a client may repeat them at will), a pool that does not exist
// (a mistyped name is an invalid request, and would make a series of any
// name) and failures to decide.
func countAdmission(pool types.NamespacedName, entity string, dryRun bool, refusal *field.Error, err error) {
	if dryRun || err != nil || refusal != nil && refusal.Type != field.ErrorTypeForbidden {
		return
	}
	metrics.LicenseAdmission(pool.Namespace, entity, pool.Name, refusal == nil)
}
