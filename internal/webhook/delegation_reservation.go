package webhook

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/delegation"
)

// A raise of a Deny pool's spec.delegations takes licenses out of the pool as
// surely as an activation does, so it is admitted by the same rounds, against
// the same ledger: it is queued with the pool's activations, decided against
// one fresh read of the pool, and, once admitted, recorded in the pool's
// status (status.delegationReservations) by the round's conditional write.
// Of a raise and an activation racing for the pool's last licenses, in one
// replica or two, one therefore sees the other and is refused. The
// reservation counts until the raise is stored in spec.delegations (which
// every round then counts) or its TTL runs out; the pool controller drops it.

// delegationRaise is a change of a pool's spec.delegations waiting for its
// round.
type delegationRaise struct {
	old, new []v1.LicenseDelegation
}

// raisedEntry is one entry of spec.delegations that a change raises.
type raisedEntry struct {
	index int // in the new spec.delegations, for the field path
	delegation.Key
	licenses int32 // what the entry delegates once stored
	more     int32 // over what it delegated before
}

// raised lists the entries of new that delegate more than old did, in the
// order of new.
func (d *delegationRaise) raised() []raisedEntry {
	before := map[delegation.Key]int32{}
	for _, o := range d.old {
		before[keyOf(o)] = o.Licenses
	}
	var out []raisedEntry
	for i, n := range d.new {
		k := keyOf(n)
		if n.Licenses > before[k] {
			out = append(out, raisedEntry{index: i, Key: k, licenses: n.Licenses, more: n.Licenses - before[k]})
		}
	}
	return out
}

func keyOf(d v1.LicenseDelegation) delegation.Key {
	return delegation.Key{Entity: d.Entity, Pool: d.PoolName()}
}

// reserveRaise refuses a change of pool's spec.delegations (old to new) that
// delegates more than the pool has available, and otherwise reserves what it
// raises (unless dryRun). Only raises of Deny pools are decided here: a cut
// frees licenses, and a Queue pool's own users wait when it gives licenses
// away (the controller revokes its newest users first).
func (r *licenseReserver) reserveRaise(ctx context.Context, old, new *v1.LicensePool, entity string, dryRun bool) (*field.Error, error) {
	raise := &delegationRaise{old: old.Spec.Delegations, new: new.Spec.Delegations}
	if len(raise.raised()) == 0 {
		return nil, nil
	}
	key := client.ObjectKeyFromObject(new)
	cached := &v1.LicensePool{}
	if err := r.cache.Get(ctx, key, cached); err == nil && cached.EnforcementOrDefault() == v1.EnforcementQueue &&
		new.EnforcementOrDefault() == v1.EnforcementQueue {
		return nil, nil
	}
	req := &reservationRequest{entity: entity, dryRun: dryRun, raise: raise,
		deadline: r.opts.Clock.Now().Add(reservationTimeout), done: make(chan reservationResult, 1)}
	return r.await(types.NamespacedName(key), req)
}

// delegationLedger is what a round counts of its pool's delegations: those
// of spec.delegations, each raised to what an admitted raise not stored yet
// promised, and the capacity they leave the pool's own users.
type delegationLedger struct {
	r        *licenseReserver
	entity   *v1.Entity // nil: the pool's entity is gone, it delegates nothing
	base     int32      // the pool's capacity before delegations
	counted  []v1.LicenseDelegation
	capacity int32
}

func (r *licenseReserver) newDelegationLedger(ctx context.Context, pool *v1.LicensePool, batch []*reservationRequest, base int32, now time.Time) (*delegationLedger, error) {
	d := &delegationLedger{r: r, base: base, capacity: base}
	if len(batch) == 0 || batch[0].entity == "" {
		return d, nil
	}
	e := &v1.Entity{}
	if err := r.cache.Get(ctx, client.ObjectKey{Name: batch[0].entity}, e); err != nil {
		if apierrors.IsNotFound(err) {
			return d, nil
		}
		return nil, fmt.Errorf("cannot read entity %q: %w", batch[0].entity, err)
	}
	d.entity = e
	d.counted = slices.Clone(pool.Spec.Delegations)
	for _, res := range pool.Status.DelegationReservations {
		if now.Before(res.ReservedAt.Add(r.opts.ReservationTTL)) {
			d.counted = raiseTo(d.counted, delegation.Key{Entity: res.Entity, Pool: res.LicensePool}, res.Licenses)
		}
	}
	capacity, _, err := d.capacityWith(ctx, pool, d.counted)
	if err != nil {
		return nil, err
	}
	d.capacity = capacity
	return d, nil
}

// raiseTo returns delegations with the entry of k delegating at least
// licenses, added if need be.
func raiseTo(delegations []v1.LicenseDelegation, k delegation.Key, licenses int32) []v1.LicenseDelegation {
	for i := range delegations {
		if keyOf(delegations[i]) == k {
			delegations[i].Licenses = max(delegations[i].Licenses, licenses)
			return delegations
		}
	}
	return append(delegations, v1.LicenseDelegation{Entity: k.Entity, LicensePool: k.Pool, Licenses: licenses})
}

// capacityWith is the pool's capacity, as the pool controller counts it
// (internal/delegation), were its spec.delegations the given ones: a raise
// counts in a child pool once its parent published it, and a parent pool
// counts without what it delegates until the child applied a cut.
func (d *delegationLedger) capacityWith(ctx context.Context, pool *v1.LicensePool, delegations []v1.LicenseDelegation) (int32, delegation.Plan, error) {
	if d.entity == nil {
		return d.base, delegation.Plan{}, nil
	}
	p := *pool // a shallow copy: only its spec.delegations differ
	p.Spec.Delegations = delegations
	view, err := delegation.Look(ctx, d.r.cache, &p, d.entity, d.r.opts.PlatformEntity)
	if err != nil {
		return 0, delegation.Plan{}, fmt.Errorf("cannot read the delegations of license pool %q: %w", pool.Name, err)
	}
	capacity, plan, _ := view.Capacity(d.base)
	return capacity, plan, nil
}

// refusesAny tells whether some raise of batch, taken alone, finds too few
// licenses available.
func (d *delegationLedger) refusesAny(ctx context.Context, pool *v1.LicensePool, batch []*reservationRequest, l *ledger) (bool, error) {
	for _, req := range batch {
		if req.raise == nil {
			continue
		}
		refusal, _, _, err := d.check(ctx, pool, req.raise, l)
		if err != nil || refusal != nil {
			return refusal != nil, err
		}
	}
	return false, nil
}

// check decides raise against the round so far: a refusal naming the first
// raised entry that does not fit, or what the pool counts and has left once
// it is admitted. A raise fits when the pool's users, as l counts them, keep
// their licenses and the pool can offer the whole of it.
func (d *delegationLedger) check(ctx context.Context, pool *v1.LicensePool, raise *delegationRaise, l *ledger) (
	refusal *field.Error, counted []v1.LicenseDelegation, capacity int32, err error) {
	counted, capacity = slices.Clone(d.counted), d.capacity
	if d.entity == nil {
		return nil, counted, capacity, nil // the controller reports what an entity that went delegates
	}
	held := l.heldBesides("")
	for _, e := range raise.raised() {
		next := raiseTo(slices.Clone(counted), e.Key, e.licenses)
		nextCapacity, plan, err := d.capacityWith(ctx, pool, next)
		if err != nil {
			return nil, nil, 0, err
		}
		if int(nextCapacity) < held || plan.Short[e.Key] > 0 {
			return field.Forbidden(field.NewPath("spec", "delegations").Index(e.index).Child("licenses"), fmt.Sprintf(
				"license pool %q of entity %q has %d available licenses; cannot delegate %d more to %q",
				pool.Name, d.entity.Name, max(int(capacity)-held, 0), e.more, e.Entity)), nil, 0, nil
		}
		counted, capacity = next, nextCapacity
	}
	return nil, counted, capacity, nil
}

// decide answers one raise and, when it is admitted, counts it for the rest
// of the round and reserves it on pool (unless a dry run). admitted tells
// that pool must be written.
func (d *delegationLedger) decide(ctx context.Context, pool *v1.LicensePool, req *reservationRequest, l *ledger, now time.Time) (
	refusal *field.Error, admitted bool, err error) {
	refusal, counted, capacity, err := d.check(ctx, pool, req.raise, l)
	if err != nil || refusal != nil || req.dryRun || d.entity == nil {
		return refusal, false, err
	}
	raised := req.raise.raised()
	if len(pool.Status.DelegationReservations)+len(raised) > maxDelegationReservations {
		return nil, false, fmt.Errorf("license pool %q has %d delegation raises the operator has not seen yet; retry in a moment",
			pool.Name, len(pool.Status.DelegationReservations))
	}
	d.counted, d.capacity = counted, capacity
	for _, e := range raised {
		setDelegationReservation(pool, v1.DelegationReservation{Entity: e.Entity, LicensePool: e.Pool, Licenses: e.licenses, ReservedAt: metav1.NewTime(now)})
	}
	return nil, true, nil
}

// maxDelegationReservations is the bound of status.delegationReservations.
const maxDelegationReservations = 64

// setDelegationReservation records res, replacing an earlier one for its pool.
func setDelegationReservation(pool *v1.LicensePool, res v1.DelegationReservation) {
	for i, r := range pool.Status.DelegationReservations {
		if r.Entity == res.Entity && r.LicensePool == res.LicensePool {
			pool.Status.DelegationReservations[i] = res
			return
		}
	}
	pool.Status.DelegationReservations = append(pool.Status.DelegationReservations, res)
}
