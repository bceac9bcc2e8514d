package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/wait"
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
// resourceVersion, so that of two replicas racing for the last license one
// gets a Conflict, re-reads, and is refused. And, as ResourceQuota does, it
// commits in groups: the admissions of one pool queue up, and one of them
// (the leader) decides the whole queue in arrival order against one fresh
// read and charges it with one write. Admissions that arrive while that write
// is in flight form the next group. A burst of N admissions into one pool
// therefore costs about as many writes as the pool has round trips to the
// API server in that time, not N.
//
// The per-pool queue exists only while admissions for the pool are pending:
// the leader removes it when it finds the queue empty, so pool names that
// requests invent leave nothing behind.
type licenseReserver struct {
	cache  client.Client // users and cached pools (the cache shares the controllers' view)
	reader client.Reader // pools, read from the API server
	opts   Options

	mu     sync.Mutex
	queues map[types.NamespacedName]*reservationQueue
}

// reservationQueue holds the admissions of one pool waiting for a decision.
// busy is true while a leader works on the pool; the leader takes the whole
// queue at each round.
type reservationQueue struct {
	waiting []*reservationRequest
	busy    bool
	// written is the pool as the API server answered the last round's write,
	// while the burst lasts. The next round starts from it instead of reading
	// the pool again, as ResourceQuota admission starts from the quotas it
	// has just updated: the write is conditional on its resourceVersion, so
	// a round decided on a copy someone has changed since is refused and
	// decided again on a fresh read. Only the leader touches it.
	written *v1.LicensePool
}

// reservationRequest is one admission waiting for its pool's decision.
type reservationRequest struct {
	user       string
	generation int64
	entity     string
	dryRun     bool
	// raise, when set, makes this the admission of a change of the pool's
	// spec.delegations rather than of a user (user is then empty).
	raise    *delegationRaise
	deadline time.Time
	// done receives the decision, or lead when this request must take over as
	// the pool's leader.
	done chan reservationResult
}

type reservationResult struct {
	refusal *field.Error
	err     error
	lead    bool
}

func newLicenseReserver(c client.Client, reader client.Reader, opts Options) *licenseReserver {
	return &licenseReserver{cache: c, reader: reader, opts: opts, queues: map[types.NamespacedName]*reservationQueue{}}
}

// reserveBackoff paces the re-reads of a round after a Conflict, which come
// from the other replicas' rounds and from the controller writing the pool's
// counts. In a burst every replica commits rounds back to back, so conflicts
// are normal and the round is retried soon: the steps stay short and add up
// to about four seconds, within the webhook's ten-second timeout.
var reserveBackoff = wait.Backoff{Steps: 30, Duration: 5 * time.Millisecond, Factor: 1.3, Jitter: 1, Cap: 200 * time.Millisecond}

// maxReservations bounds the reservations a pool's status holds at once.
// Reservations stay only until the controller counts their users, so in
// steady state there are none; in a burst they are the admissions the
// controller has not counted yet. At 253 characters per name the list stays
// under 400 KB, well below etcd's 1.5 MiB object limit, whatever the number
// of users. An admission that finds the list full waits for the controller.
const maxReservations = 1000

// reservationTimeout bounds how long an admission waits for its decision,
// within the webhook's ten-second timeout.
const reservationTimeout = 8 * time.Second

// reserve returns a field error when the user cannot be activated in its pool,
// and otherwise records a reservation (unless dryRun).
// generation is the generation u will have once stored.
func (r *licenseReserver) reserve(ctx context.Context, u *v1.PlatformUser, generation int64, entity string, dryRun bool) (refusal *field.Error, err error) {
	key := types.NamespacedName{Namespace: u.Namespace, Name: u.PoolName()}
	defer func() { countAdmission(key, entity, dryRun, refusal, err) }()
	// A Queue pool admits everyone: its users wait for a license instead. The
	// cached copy is enough to tell, which spares a burst into a Queue pool
	// the live read and the queue. A pool switched to Deny a moment ago may
	// still look like Queue here; the controller stays the authority.
	cached := &v1.LicensePool{}
	if err := r.cache.Get(ctx, key, cached); err == nil && cached.EnforcementOrDefault() == v1.EnforcementQueue {
		return nil, nil
	}
	req := &reservationRequest{user: u.Name, generation: generation, entity: entity, dryRun: dryRun,
		deadline: r.opts.Clock.Now().Add(reservationTimeout), done: make(chan reservationResult, 1)}
	return r.await(key, req)
}

// await queues req on its pool and returns its decision, leading rounds of
// the queue when its turn comes.
func (r *licenseReserver) await(key types.NamespacedName, req *reservationRequest) (*field.Error, error) {
	r.mu.Lock()
	q := r.queues[key]
	if q == nil {
		q = &reservationQueue{}
		r.queues[key] = q
	}
	q.waiting = append(q.waiting, req)
	lead := !q.busy
	q.busy = true
	r.mu.Unlock()

	if !lead {
		// The leader answers every request it takes, so waiting here ends; a
		// request whose client gave up is still decided (a reservation nobody
		// uses expires with its TTL).
		res := <-req.done
		if !res.lead {
			return res.refusal, res.err
		}
	}
	r.lead(key, q, req)
	res := <-req.done // decided in a round this goroutine led
	return res.refusal, res.err
}

// lead decides rounds of key's queue until its own request is decided, then
// hands the lead to the first request of the next round, so that no
// admission waits for more rounds than its own; the last leader removes the
// empty queue.
func (r *licenseReserver) lead(key types.NamespacedName, q *reservationQueue, own *reservationRequest) {
	// The rounds must finish even if the request that leads them is
	// cancelled: other admissions wait on them.
	ctx, cancel := context.WithTimeout(context.Background(), reservationTimeout)
	defer cancel()
	for {
		r.mu.Lock()
		batch := q.waiting
		q.waiting = nil
		r.mu.Unlock()

		deferred := r.decide(ctx, key, q, batch)
		if len(deferred) > 0 {
			// The pool's reservation list is full: give the controller time
			// to count the reserved users before reading the pool again.
			time.Sleep(50 * time.Millisecond)
		}

		r.mu.Lock()
		// Requests the round could not decide go first in the next round.
		q.waiting = append(deferred, q.waiting...)
		if len(q.waiting) == 0 {
			q.busy = false
			delete(r.queues, key)
			r.mu.Unlock()
			return
		}
		if !isDeferred(own, deferred) {
			q.waiting[0].done <- reservationResult{lead: true}
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// decide answers a round of requests against one fresh read of the pool and
// charges the admitted ones with one write, repeating the round on a
// Conflict. It returns the requests it left undecided because the pool's
// reservation list is full.
func (r *licenseReserver) decide(ctx context.Context, key types.NamespacedName, q *reservationQueue, batch []*reservationRequest) []*reservationRequest {
	var answers []reservationResult
	var deferred []*reservationRequest
	backoff := reserveBackoff
	for {
		var err error
		answers, deferred, err = r.tryRound(ctx, key, q, batch)
		if err == nil || !apierrors.IsConflict(err) || backoff.Steps <= 1 {
			if err != nil {
				err = fmt.Errorf("cannot reserve a license in pool %q: %w", key.Name, err)
				for i := range answers {
					answers[i] = reservationResult{err: err}
				}
				deferred = nil
			}
			break
		}
		select {
		case <-time.After(backoff.Step()):
		case <-ctx.Done():
		}
	}
	now := r.opts.Clock.Now()
	var kept []*reservationRequest
	for _, req := range deferred {
		if now.After(req.deadline) {
			req.done <- reservationResult{err: fmt.Errorf(
				"license pool %q has %d admissions the operator has not counted yet; retry in a moment", key.Name, maxReservations)}
			continue
		}
		kept = append(kept, req)
	}
	for i, req := range batch {
		if !isDeferred(req, deferred) {
			req.done <- answers[i]
		}
	}
	return kept
}

func isDeferred(req *reservationRequest, deferred []*reservationRequest) bool {
	for _, d := range deferred {
		if d == req {
			return true
		}
	}
	return false
}

// tryRound makes one attempt at a round on a fresh copy of the pool; a
// Conflict error means the pool changed under it and the round may be
// repeated. answers has one entry per request of batch; the deferred requests
// have none that counts.
//
// The copy is the one the previous round wrote, when there is one: a round
// that charges someone writes the pool on that copy's resourceVersion, so it
// either stands on what the API server holds or fails. A round on that copy
// that fails, or that would write nothing (its refusals and dry-runs stand on
// no write), is decided again on a read.
func (r *licenseReserver) tryRound(ctx context.Context, key types.NamespacedName, q *reservationQueue, batch []*reservationRequest) (
	answers []reservationResult, deferred []*reservationRequest, err error) {
	written := q.written
	q.written = nil
	if written != nil {
		answers, deferred, pool, charged, err := r.round(ctx, key, written.DeepCopy(), batch, false)
		if err == nil && charged {
			q.written = pool
			return answers, deferred, nil
		}
	}
	pool := &v1.LicensePool{}
	if err := r.reader.Get(ctx, key, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return make([]reservationResult, len(batch)), nil, fmt.Errorf("cannot read license pool %q: %w", key.Name, err)
		}
		pool = nil
	}
	answers, deferred, pool, charged, err := r.round(ctx, key, pool, batch, true)
	if err == nil && charged {
		q.written = pool
	}
	return answers, deferred, err
}

// round decides batch against pool (nil: the pool does not exist) and, when
// it charges anyone, writes the pool (charged). fresh tells that pool was
// just read from the API server rather than kept from the last round's write;
// a round on a kept copy that would refuse anyone decides nothing.
func (r *licenseReserver) round(ctx context.Context, key types.NamespacedName, pool *v1.LicensePool, batch []*reservationRequest, fresh bool) (
	answers []reservationResult, deferred []*reservationRequest, written *v1.LicensePool, charged bool, err error) {
	answers = make([]reservationResult, len(batch))
	poolPath := field.NewPath("spec", "licensePool")
	if pool == nil {
		for i, req := range batch {
			answers[i].refusal = field.Invalid(poolPath, key.Name, fmt.Sprintf(
				"license pool %q of entity %q does not exist; name an existing pool or ask for one to be created", key.Name, req.entity))
		}
		return answers, nil, nil, false, nil
	}
	if pool.EnforcementOrDefault() == v1.EnforcementQueue {
		return answers, nil, nil, false, nil // admitted; the users wait for a license if none is free
	}
	now := r.opts.Clock.Now()
	// The approved requests the controller counts (they carry its
	// finalizer), as this replica's cache shows them: one approval not seen
	// yet refuses a user the pool could take, never the reverse.
	requests := &v1.LicenseRequestList{}
	if err := r.cache.List(ctx, requests, client.InNamespace(key.Namespace), client.MatchingFields{index.RequestPool: key.Name}); err != nil {
		return answers, nil, nil, false, fmt.Errorf("cannot list the license requests of pool %q: %w", key.Name, err)
	}
	base, _ := pool.CapacityWith(v1.TotalRequests(requests.Items, now), now)
	d, err := r.newDelegationLedger(ctx, pool, batch, base, now)
	if err != nil {
		return answers, nil, nil, false, err
	}
	capacity := d.capacity
	l, err := r.newLedger(ctx, pool, now, cachedUsers{r.cache})
	if err != nil {
		return answers, nil, nil, false, err
	}
	raiseRefused, err := d.refusesAny(ctx, pool, batch, l)
	if err != nil {
		return answers, nil, nil, false, err
	}
	if l.refusesAny(batch, int(capacity)) || raiseRefused {
		if !fresh {
			// A refusal stands on no write, so it must stand on a read: the
			// caller decides the round again on one.
			return answers, nil, nil, false, nil
		}
		// The cache may not show yet a holder deactivated or moved away a
		// moment ago (by the client now asking for its license, say), and
		// the pool's record counts it until the controller's next pass. A
		// refusal is worth one read of the namespace's users from the API
		// server, after the pool: a license freed before this request is
		// then given, and a pool that stays full costs one list per round,
		// not one per refused request.
		live, err := listLiveUsers(ctx, r.reader, pool.Namespace)
		if err != nil {
			return answers, nil, nil, false, err
		}
		if l, err = r.newLedger(ctx, pool, now, live); err != nil {
			return answers, nil, nil, false, err
		}
	}
	for i, req := range batch {
		if req.raise != nil {
			refusal, admitted, err := d.decide(ctx, pool, req, l, now)
			if err != nil {
				return answers, nil, nil, false, err
			}
			answers[i].refusal = refusal
			charged = charged || admitted
			capacity = d.capacity
			continue
		}
		if held := l.heldBesides(req.user); held >= int(capacity) {
			answers[i].refusal = field.Forbidden(poolPath, fmt.Sprintf(
				"license pool %q of entity %q is full: %d/%d licenses used; deactivate a user or request more licenses",
				key.Name, req.entity, held, capacity))
			continue
		}
		if req.dryRun {
			continue // admitted, charged nothing
		}
		if !l.reserved[req.user] && len(pool.Status.Reservations) >= maxReservations {
			deferred = append(deferred, req)
			continue
		}
		l.charge(req.user)
		setReservation(pool, v1.LicenseReservation{User: req.user, ReservedAt: metav1.NewTime(now), Generation: req.generation})
		charged = true
	}
	if !charged {
		return answers, deferred, nil, false, nil
	}
	if err := r.cache.Status().Update(ctx, pool); err != nil {
		return answers, deferred, nil, true, err
	}
	return answers, deferred, pool, true, nil
}

// ledger counts the licenses of a Deny pool that are held or promised. It
// takes the larger of two counts, each of which never undercounts:
//
//   - the pool's own record: the users the controller counted in its last
//     write (used + pending: under Deny every active user was admitted
//     against a license), plus the reservations made since. The controller
//     drops a reservation in the same write that counts its user, so every
//     admitted user is in one of the two whatever this replica's cache shows;
//   - this replica's cache: the active users of the pool, plus the unexpired
//     reservations whose user the cache does not show yet. It covers users
//     the controller has not counted at all (created while admission was not
//     called).
//
// The pool's record still counts the holders deactivated or moved since the
// controller's last pass; newLedger gives those back after checking them on
// the API server. A user deleted since is counted until the next pass.
//
// A ledger built on users listed from the API server after the pool was read
// counts them alone: every admitted user is then either in the list or still
// reserved (the controller drops a reservation only once its user is stored,
// so before the pool was read), and the pool's record, which still counts a
// holder the controller released between its write of the user and its write
// of the pool, would only refuse a license that is free.
type ledger struct {
	recorded int             // counted by the controller, plus live reservations
	reserved map[string]bool // users with a live reservation in the pool's record
	seen     map[string]bool // users that hold or were promised a license in the view
	live     bool            // the view is the API server's: seen alone counts
}

func (r *licenseReserver) newLedger(ctx context.Context, pool *v1.LicensePool, now time.Time, users userView) (*ledger, error) {
	inPool, err := users.poolUsers(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("cannot list users of license pool %q: %w", pool.Name, err)
	}
	l := &ledger{
		live:     users.live(),
		recorded: int(pool.Status.Used) + int(pool.Status.Pending),
		reserved: make(map[string]bool, len(pool.Status.Reservations)),
		seen:     make(map[string]bool, len(inPool)+len(pool.Status.Reservations)),
	}
	generations := make(map[string]int64, len(inPool))
	for i := range inPool {
		u := &inPool[i]
		generations[u.Name] = u.Generation
		if u.WantsLicenseIn(pool.Name) {
			l.seen[u.Name] = true
			continue
		}
		if holdsLicenseIn(u, pool.Name) {
			// Deactivated or moved away, and not yet released by the
			// controller: its license is free, but the pool's record still
			// counts it. Read it from the API server, after the pool: if it
			// still holds the license there, no write of the controller has
			// released it, so the record read before counts it and the
			// license can be given back now rather than after the next pass.
			live := u
			if !users.live() {
				live = &v1.PlatformUser{}
				if err := r.reader.Get(ctx, client.ObjectKeyFromObject(u), live); err != nil {
					if apierrors.IsNotFound(err) {
						continue // gone: the next pass of the controller frees it
					}
					return nil, fmt.Errorf("cannot read user %q: %w", u.Name, err)
				}
			}
			if !live.WantsLicenseIn(pool.Name) && holdsLicenseIn(live, pool.Name) {
				l.recorded--
			}
		}
	}
	for _, res := range pool.Status.Reservations {
		if !now.Before(res.ReservedAt.Add(r.opts.ReservationTTL)) {
			continue
		}
		generation, ok := generations[res.User]
		covered, wants := ok && res.CoveredBy(generation), l.seen[res.User]
		if !ok {
			// Not among the pool's users: moved to another pool since, not
			// created yet, or (in the cache) arrived since the list above,
			// which the list alone cannot tell apart.
			u, err := users.user(ctx, pool.Namespace, res.User)
			if err != nil {
				return nil, err
			}
			covered = u != nil && res.CoveredBy(u.Generation)
			if u != nil && u.WantsLicenseIn(pool.Name) {
				// Arrived since the list: it holds its license like any
				// user of the pool, not freed as one that moved away.
				wants = true
				l.seen[res.User] = true
			}
		}
		if covered && !wants {
			// The admitted request was stored and the user has since been
			// deactivated or moved: the license it reserved is free.
			continue
		}
		l.recorded++
		l.reserved[res.User] = true
		if !covered {
			l.seen[res.User] = true
		}
	}
	return l, nil
}

// holdsLicenseIn tells whether u's status shows a license of pool.
func holdsLicenseIn(u *v1.PlatformUser, pool string) bool {
	return u.Status.LicensePool == pool && meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)
}

// heldBesides is how many licenses are held or promised to users other than user.
func (l *ledger) heldBesides(user string) int {
	seen := len(l.seen)
	if l.seen[user] {
		seen--
	}
	if l.live {
		return seen
	}
	recorded := l.recorded
	if l.reserved[user] {
		recorded--
	}
	return max(seen, recorded)
}

// refusesAny tells whether some activation of batch finds no free license.
func (l *ledger) refusesAny(batch []*reservationRequest, capacity int) bool {
	for _, req := range batch {
		if req.raise == nil && l.heldBesides(req.user) >= capacity {
			return true
		}
	}
	return false
}

// charge counts a license reserved for user in this round.
func (l *ledger) charge(user string) {
	if !l.reserved[user] {
		l.reserved[user] = true
		l.recorded++
	}
	l.seen[user] = true
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
