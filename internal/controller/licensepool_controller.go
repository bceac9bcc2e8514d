package controller

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/email"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/licensing"
	"visio.dev/operator/internal/metrics"
)

// LicensePoolReconciler is the authority on named licenses. Its work item is a
// pool name in a namespace, whether or not the pool exists: one pass recounts
// the pool from scratch, decides with licensing.Allocate who holds a license,
// and writes the status of the pool and of every user whose state changed.
//
// Deciding per pool rather than per user is what makes the count exact: the
// workqueue never runs two passes for the same pool at once, so two users can
// never both take the last license.
type LicensePoolReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// ReservationTTL is how long a license reserved at admission is kept for a
	// user that never appears (its creation failed after admission).
	ReservationTTL time.Duration
	// MaxConcurrentReconciles bounds the pools reconciled in parallel.
	MaxConcurrentReconciles int
	// PlatformEntity names the Entity whose namespace holds the Concierges.
	PlatformEntity string

	// APIReader reads past the cache: the users of a namespace once after
	// start (see primeAfterStart), and a user the cache does not show.
	APIReader client.Reader

	expectations *writeExpectations
	poolWrites   countsWrites
	primed       sync.Map           // namespaces whose users were listed live since start
	ownWrites    sync.Map           // pool → resourceVersion of this controller's last status write
	priming      singleflight.Group // one live list per namespace, whichever pools ask at once
}

// expectationTimeout bounds how long a pool waits for the cache to show its
// own writes before recounting anyway.
const expectationTimeout = 30 * time.Second

// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=licensepools,verbs=get;list;watch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=licensepools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=platformusers,verbs=get;list;watch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=platformusers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=licenserequests,verbs=get;list;watch;update;patch

// Reconcile recounts one license pool.
func (r *LicensePoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	now := r.Clock.Now()
	if err := r.primeAfterStart(ctx, req.Namespace, now); err != nil {
		return ctrl.Result{}, err
	}
	if emptied, err := r.namespaceEmptied(ctx, req.Namespace); err != nil || emptied {
		if err == nil {
			metrics.ForgetPool(req.Namespace, req.Name)
			err = r.letRequestsGo(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !r.expectations.satisfied(req.NamespacedName, now, expectationTimeout, r.cachedResourceVersion(ctx)) {
		// Our last writes have not reached the cache; their events requeue us.
		logger.V(1).Info("Waiting for the cache to observe the previous pass")
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}

	pool := &v1.LicensePool{}
	var err error
	if err = r.Get(ctx, req.NamespacedName, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("cannot read license pool: %w", err)
		}
		pool = nil
	}
	if pool != nil {
		if pool, err = r.freshPool(ctx, req.NamespacedName, pool); err != nil {
			return ctrl.Result{}, err
		}
	}
	users := &v1.PlatformUserList{}
	if err := r.List(ctx, users, client.InNamespace(req.Namespace), client.MatchingFields{index.UserPool: req.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("cannot list users of license pool %q: %w", req.Name, err)
	}

	place, err := r.placeOf(ctx, req.Namespace, users.Items)
	if err != nil {
		return ctrl.Result{}, err
	}
	requests, err := r.requestsOf(ctx, req.NamespacedName)
	if err != nil {
		return ctrl.Result{}, err
	}
	var capacity int32
	var nextExpiry *metav1.Time
	var chargeAgain bool
	var deleg delegations
	if pool != nil && pool.DeletionTimestamp.IsZero() && place.entity != "" {
		if chargeAgain, err = r.takeCharge(ctx, requests, now); err != nil {
			return ctrl.Result{}, err
		}
		capacity, nextExpiry = pool.CapacityWith(v1.TotalRequests(requests, now), now)
		if capacity, deleg, err = r.delegationsOf(ctx, pool, place.entity, capacity); err != nil {
			return ctrl.Result{}, err
		}
	}
	claims := make([]licensing.Claim, len(users.Items))
	for i := range users.Items {
		claims[i] = claimOf(&users.Items[i], req.Name, pool != nil)
		if place.blocked(&users.Items[i]) {
			claims[i].Wants = false
		}
	}
	alloc := licensing.Allocate(capacity, now, claims)

	// Write the users that lose a license before those that gain one, and stop
	// if any loss could not be written: at no instant may more users show a
	// license of this pool than it has.
	var losing, others []*v1.PlatformUser
	for i := range users.Items {
		u := &users.Items[i]
		desired := r.desiredUserStatus(u, req.Name, pool, alloc.Decisions[i], capacity, alloc, place)
		if desired == nil || equality.Semantic.DeepEqual(&u.Status, desired) {
			continue
		}
		updated := u.DeepCopy()
		updated.Status = *desired
		if isConditionTrue(u.Status.Conditions, v1.LicensedCondition) && !isConditionTrue(desired.Conditions, v1.LicensedCondition) {
			losing = append(losing, updated)
		} else {
			others = append(others, updated)
		}
	}
	wroteUsers := len(losing)+len(others) > 0
	for _, batch := range [][]*v1.PlatformUser{losing, others} {
		if conflict, err := r.writeUsers(ctx, req.NamespacedName, users, batch, now); err != nil {
			return ctrl.Result{}, err
		} else if conflict {
			// A user changed meanwhile: its event brings a new pass. Stop
			// here, so no license is granted against a loss not written.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
	}
	r.recordUserEvents(users, alloc, pool, req.Name, capacity)
	// Every user that lost a license is written: the requests being
	// deleted, which this pass no longer counted, may go.
	if err := r.release(ctx, requests); err != nil {
		return ctrl.Result{}, err
	}

	if pool == nil {
		metrics.ForgetPool(req.Namespace, req.Name)
		r.ownWrites.Delete(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	metrics.ObserveRequests(req.Namespace, place.entity, req.Name, requestCounts(requests, now))
	res, err := r.updatePoolStatus(ctx, pool, alloc, capacity, nextExpiry, users, requests, now, place, deleg, wroteUsers)
	if chargeAgain && err == nil && (res.RequeueAfter == 0 || res.RequeueAfter > time.Second) {
		res.RequeueAfter = time.Second
	}
	return res, err
}

// namespaceEmptied reports whether namespace is being deleted. Its pools,
// requests and users are then all going away, in whatever order the
// namespace controller deletes them, and nobody reads their statuses any
// more: writing them would be one write per user as each pool disappears
// before its users, thousands for a large entity, for nothing.
func (r *LicensePoolReconciler) namespaceEmptied(ctx context.Context, namespace string) (bool, error) {
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		// Not an entity namespace (the cache holds those only), or gone.
		return false, client.IgnoreNotFound(err)
	}
	return !ns.DeletionTimestamp.IsZero(), nil
}

// letRequestsGo removes the finalizer of the pool's requests being deleted,
// in a namespace being emptied: the users they licensed go with it.
func (r *LicensePoolReconciler) letRequestsGo(ctx context.Context, pool types.NamespacedName) error {
	requests, err := r.requestsOf(ctx, pool)
	if err != nil {
		return err
	}
	return r.release(ctx, requests)
}

// claimOf is how the allocator sees a user of the pool named pool.
func claimOf(u *v1.PlatformUser, pool string, poolExists bool) licensing.Claim {
	c := licensing.Claim{
		Name:      u.Name,
		CreatedAt: u.CreationTimestamp.Time,
		Wants:     poolExists && u.WantsLicenseIn(pool),
	}
	if u.Status.LicensePool == pool && u.Status.LicensedSince != nil && isConditionTrue(u.Status.Conditions, v1.LicensedCondition) {
		since := u.Status.LicensedSince.Time
		c.HeldSince = &since
	}
	return c
}

// userWritesInFlight bounds the status writes one pass has in flight. A burst
// of users into a pool is a pass with a hundred users to write: one at a time,
// the pass would take a hundred round trips to the API server, while the
// clients that created them wrote in parallel.
const userWritesInFlight = 16

// writeUsers writes the users' new statuses, several at once, and waits for
// them all. conflict reports that one of them changed since the pass read it
// (its write was refused; the others stand). The first other error stops the
// writes not yet started.
func (r *LicensePoolReconciler) writeUsers(ctx context.Context, pool types.NamespacedName, users *v1.PlatformUserList,
	batch []*v1.PlatformUser, now time.Time) (conflict bool, err error) {
	var conflicted atomic.Bool
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(userWritesInFlight)
	for _, updated := range batch {
		g.Go(func() error {
			err := r.writeUser(gctx, pool, users, updated, now)
			if apierrors.IsConflict(err) {
				conflicted.Store(true)
				return nil
			}
			return err
		})
	}
	err = g.Wait()
	return conflicted.Load(), err
}

// writeUser stores a user's new status and remembers the write until the cache
// shows it. The patch is conditional on the resourceVersion the decision was
// based on.
func (r *LicensePoolReconciler) writeUser(ctx context.Context, pool types.NamespacedName, users *v1.PlatformUserList,
	updated *v1.PlatformUser, now time.Time) error {
	var orig *v1.PlatformUser
	for i := range users.Items {
		if users.Items[i].Name == updated.Name {
			orig = &users.Items[i]
			break
		}
	}
	patch := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, updated, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		if apierrors.IsConflict(err) {
			return err
		}
		return fmt.Errorf("cannot write status of user %q: %w", updated.Name, err)
	}
	r.expectations.expect(pool, updated, now)
	return nil
}

// primeAfterStart lists a namespace's users from the API server the first
// time one of its pools is reconciled after start, and expects the cache to
// show each of them at least as new before their pool is counted.
//
// The cache's informers list pools and users separately: right after a
// start, the pools may come from a later list than the users. A pool whose
// last write counted a user (and dropped its reservation) would then be
// recounted without a user the users' informer has not delivered yet, and
// admission, which reads that count, would admit one more than the pool
// holds.
func (r *LicensePoolReconciler) primeAfterStart(ctx context.Context, namespace string, now time.Time) error {
	if _, done := r.primed.Load(namespace); done || r.APIReader == nil {
		return nil
	}
	_, err, _ := r.priming.Do(namespace, func() (any, error) { return nil, r.prime(ctx, namespace, now) })
	return err
}

// prime lists namespace's users live and expects the cache to show them.
func (r *LicensePoolReconciler) prime(ctx context.Context, namespace string, now time.Time) error {
	if _, done := r.primed.Load(namespace); done {
		return nil // primed by a call that ended as this one began
	}
	// By pages: one page of users at a time in memory, not an entity's
	// whole staff, and the pages are one consistent snapshot.
	next := ""
	for {
		users := &v1.PlatformUserList{}
		if err := r.APIReader.List(ctx, users, client.InNamespace(namespace),
			client.Limit(primeListPage), client.Continue(next)); err != nil {
			return fmt.Errorf("cannot list the users of namespace %q: %w", namespace, err)
		}
		for i := range users.Items {
			u := &users.Items[i]
			for _, pool := range []string{u.PoolName(), u.Status.LicensePool} {
				if pool != "" {
					r.expectations.expect(types.NamespacedName{Namespace: namespace, Name: pool}, u, now)
				}
			}
		}
		if next = users.Continue; next == "" {
			break
		}
	}
	r.primed.Store(namespace, true)
	return nil
}

// primeListPage is how many users primeAfterStart reads per request.
const primeListPage = 500

// cachedResourceVersion reads a user's resourceVersion from the cache. A
// user the cache does not show is looked up on the API server: if it is
// there, the cache has not caught up yet (found, at no version); if not, it
// was deleted.
func (r *LicensePoolReconciler) cachedResourceVersion(ctx context.Context) func(types.NamespacedName) (string, bool) {
	return func(key types.NamespacedName) (string, bool) {
		u := &v1.PlatformUser{}
		err := r.Get(ctx, key, u)
		if err == nil {
			return u.ResourceVersion, true
		}
		if r.APIReader != nil && apierrors.IsNotFound(err) {
			if err := r.APIReader.Get(ctx, key, &v1.PlatformUser{}); err == nil || !apierrors.IsNotFound(err) {
				return "0", true
			}
		}
		return "", false
	}
}

// updatePoolStatus writes the pool's counts, drops the reservations that are no
// longer needed, and asks to come back when the next grant or reservation
// expires. wroteUsers says the pass has just written users: their pool's
// counts are then written in the same pass, so that a pool never disagrees
// with its users for longer than the pass that wrote them.
func (r *LicensePoolReconciler) updatePoolStatus(ctx context.Context, pool *v1.LicensePool, alloc licensing.Allocation,
	capacity int32, nextExpiry *metav1.Time, users *v1.PlatformUserList, requests []v1.LicenseRequest, now time.Time,
	place userPlace, deleg delegations, wroteUsers bool) (ctrl.Result, error) {
	orig := pool.DeepCopy()
	st := &pool.Status
	st.Capacity, st.Used, st.Available, st.Pending = capacity, alloc.Licensed, alloc.Available, alloc.Waiting
	st.Requested = int32(min(v1.TotalRequests(requests, now).Requested, math.MaxInt32))
	st.NextExpiry = nextExpiry
	deleg.apply(st)

	requeue := time.Duration(0)
	if nextExpiry != nil {
		requeue = nextExpiry.Sub(now)
	}
	st.Reservations = r.liveReservations(pool, users, now)
	st.DelegationReservations = r.liveDelegationReservations(pool, now)
	expiries := make([]metav1.Time, 0, len(st.Reservations)+len(st.DelegationReservations))
	for _, res := range st.Reservations {
		expiries = append(expiries, res.ReservedAt)
	}
	for _, res := range st.DelegationReservations {
		expiries = append(expiries, res.ReservedAt)
	}
	for _, at := range expiries {
		if d := at.Add(r.ReservationTTL).Sub(now); requeue == 0 || d < requeue {
			requeue = max(d, time.Second)
		}
	}

	msg := fmt.Sprintf("%d/%d licenses used", st.Used, st.Capacity)
	if st.Pending > 0 {
		msg += ", " + waiting(st.Pending)
	}
	if st.Requested > 0 {
		msg += fmt.Sprintf(", %d requested", st.Requested)
	}
	msg += deleg.summary()
	switch {
	case !pool.DeletionTimestamp.IsZero():
		setPhase(&st.StatusBase, pool.Generation, phaseProgressing, v1.ReasonProgressing, "license pool is being deleted")
	case place.entity == "":
		setPhase(&st.StatusBase, pool.Generation, phaseStalled, v1.ReasonNotInEntityNamespace, place.notInEntityMessage("license pool"))
	case deleg.invalidMessage() != "":
		setPhase(&st.StatusBase, pool.Generation, phaseStalled, v1.ReasonDelegationInvalid, truncate(deleg.invalidMessage()+"; "+msg))
	default:
		setPhase(&st.StatusBase, pool.Generation, phaseReady, v1.ReasonReconciled, msg)
	}
	if equality.Semantic.DeepEqual(&orig.Status, &pool.Status) {
		return ctrl.Result{RequeueAfter: requeue}, nil
	}
	key := client.ObjectKeyFromObject(pool)
	if wait := r.poolWrites.wait(key, now); wait > 0 && !wroteUsers && deferrable(pool, orig) {
		// Only the reservation list changed, on a pool written a moment ago
		// (admissions in a burst): it is written at most once per interval.
		// Nothing depends on it being written sooner: admission counts a
		// reservation until the write that counts its user. Counts are
		// never deferred: they are what people, dashboards and admission
		// read.
		if requeue == 0 || wait < requeue {
			requeue = wait
		}
		return ctrl.Result{RequeueAfter: requeue}, nil
	}
	written, err := writeStatusIfChanged(ctx, r.Client, orig, pool, &orig.Status, &pool.Status)
	if err != nil {
		return ctrl.Result{}, err
	}
	if written {
		metrics.ObservePool(ctx, r.Client, pool, alloc)
		r.poolWrites.wrote(key, now)
		r.wrote(pool)
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// maxDeferredReservations is how many reservations a pool may carry before its
// write is no longer deferred: admission stops charging at 1,000.
const maxDeferredReservations = 500

// deferrable reports whether a pool's new status may wait for the counts
// interval: only when its counts and conditions are unchanged, and never for
// a new generation, a deletion, or a reservation list growing long.
func deferrable(pool, orig *v1.LicensePool) bool {
	return pool.DeletionTimestamp.IsZero() && orig.Status.ObservedGeneration == pool.Generation &&
		len(pool.Status.Reservations) < maxDeferredReservations &&
		orig.Status.LicenseCounts == pool.Status.LicenseCounts &&
		equality.Semantic.DeepEqual(orig.Status.Conditions, pool.Status.Conditions) &&
		equality.Semantic.DeepEqual(orig.Status.Delegated, pool.Status.Delegated) &&
		equality.Semantic.DeepEqual(orig.Status.DelegatedIn, pool.Status.DelegatedIn)
}

// liveReservations keeps the reservations that have not outlived the TTL and
// whose user the cache does not yet show at the generation they were made for.
// A reservation is dropped in the same write that counts its user in used and
// pending, which admission reads: every admitted user is in the one or the
// other, whatever the cache of another replica shows.
func (r *LicensePoolReconciler) liveReservations(pool *v1.LicensePool, users *v1.PlatformUserList, now time.Time) []v1.LicenseReservation {
	if len(pool.Status.Reservations) == 0 {
		return pool.Status.Reservations
	}
	seen := make(map[string]int64, len(users.Items))
	for i := range users.Items {
		seen[users.Items[i].Name] = users.Items[i].Generation
	}
	var out []v1.LicenseReservation
	for _, res := range pool.Status.Reservations {
		generation, ok := seen[res.User]
		if now.Sub(res.ReservedAt.Time) >= r.ReservationTTL || ok && res.CoveredBy(generation) {
			continue
		}
		out = append(out, res)
	}
	return out
}

// SetupWithManager registers the controller: pools, and users mapped to the
// pools they name and hold a license in.
func (r *LicensePoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.expectations == nil {
		r.expectations = newWriteExpectations()
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.LicensePool{}).
		Watches(&v1.PlatformUser{}, handler.EnqueueRequestsFromMapFunc(r.poolsOfUserAndEmail)).
		Watches(&v1.Entity{}, handler.EnqueueRequestsFromMapFunc(r.poolsOfHierarchy), builder.WithPredicates(entityPlaceChanged)).
		Watches(&v1.LicensePool{}, handler.EnqueueRequestsFromMapFunc(r.poolsLinkedTo), builder.WithPredicates(delegationsChanged)).
		Watches(&v1.LicenseRequest{}, handler.EnqueueRequestsFromMapFunc(poolOfRequest), builder.WithPredicates(requestCountChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("licensepool").
		Complete(r)
}

// poolsOfUserAndEmail maps a user to its pools and to the pools of the other
// users of its entity with the same email: creating or deleting one decides
// which of them holds the email.
func (r *LicensePoolReconciler) poolsOfUserAndEmail(ctx context.Context, o client.Object) []reconcile.Request {
	u := o.(*v1.PlatformUser)
	reqs := poolsOfUser(ctx, u)
	same := &v1.PlatformUserList{}
	if err := r.List(ctx, same, client.InNamespace(u.Namespace), client.MatchingFields{index.UserEmail: email.Canonical(u.Spec.Email)}); err != nil {
		return reqs
	}
	for i := range same.Items {
		if same.Items[i].Name != u.Name {
			reqs = append(reqs, poolsOfUser(ctx, &same.Items[i])...)
		}
	}
	return reqs
}

// poolsOfEntity maps an Entity whose namespace came or went to the pools of
// its namespace (their users may now be licensed, or not), and the platform
// entity to the pools of every Concierge (whose role now counts, or not).
func (r *LicensePoolReconciler) poolsOfEntity(ctx context.Context, o client.Object) []reconcile.Request {
	e := o.(*v1.Entity)
	users := &v1.PlatformUserList{}
	if e.Name == r.PlatformEntity {
		if err := r.List(ctx, users, client.MatchingFields{index.UserRole: string(v1.RoleConcierge)}); err != nil {
			return nil
		}
	}
	if ns := e.NamespaceName(); ns != "" {
		inNS := &v1.PlatformUserList{}
		if err := r.List(ctx, inNS, client.InNamespace(ns)); err == nil {
			users.Items = append(users.Items, inNS.Items...)
		}
		pools := &v1.LicensePoolList{}
		if err := r.List(ctx, pools, client.InNamespace(ns)); err == nil {
			for i := range pools.Items {
				users.Items = append(users.Items, v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: ns},
					Spec: v1.PlatformUserSpec{LicensePool: pools.Items[i].Name}})
			}
		}
	}
	seen := map[reconcile.Request]bool{}
	var reqs []reconcile.Request
	for i := range users.Items {
		for _, req := range poolsOfUser(ctx, &users.Items[i]) {
			if !seen[req] {
				seen[req] = true
				reqs = append(reqs, req)
			}
		}
	}
	return reqs
}

// entityPlaceChanged lets through the Entity events that change which
// namespace is whose: not the rollups of its status.
var entityPlaceChanged = predicate.Funcs{
	UpdateFunc: func(ev event.UpdateEvent) bool {
		o, n := ev.ObjectOld.(*v1.Entity), ev.ObjectNew.(*v1.Entity)
		return o.Status.Namespace != n.Status.Namespace || o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() ||
			!slices.Equal(o.Status.Children, n.Status.Children)
	},
}

// poolsOfUser maps a user to the pool it names and, while it still holds a
// license of another pool (it moved), to that pool too.
func poolsOfUser(_ context.Context, o client.Object) []reconcile.Request {
	u := o.(*v1.PlatformUser)
	reqs := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: u.Namespace, Name: u.PoolName()}}}
	if held := u.Status.LicensePool; held != "" && held != u.PoolName() {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: u.Namespace, Name: held}})
	}
	return reqs
}
