// Package delegation is the arithmetic of licenses a parent pool hands to the
// pools of its sub-entities (guarantee 10): how much the parent takes out of
// its own capacity, what it offers, and what a child pool counts. It holds
// no I/O; the pool controller and admission gather its inputs.
//
// The handoff has two steps, each side acting only on what the other has
// written. For each child pool, the parent's status.delegated publishes an
// offer (what the child may count), what the parent takes out of its own
// capacity (never less than the offer, nor than what the child may still
// count of an earlier offer), and a revision that grows with every new offer:
//
//   - the parent raises an offer only in the status write that follows the
//     users it revoked for it, and lowers it (a cut, or a pool that shrank)
//     at once: counting less is always safe for the child;
//   - the child counts min(offer, the parent's spec), writes its own users,
//     then acknowledges in status.delegatedIn what it counts and the revision
//     it applied;
//   - the parent takes back what it no longer offers only once the child
//     acknowledged the current revision: from then on the child counts at
//     most the current offer, whatever spec it reads.
//
// Revisions never repeat, so an acknowledgement of an older offer that
// happened to have the same value is never taken for the current one.
// Whatever the order of the passes and however stale either side's cache,
// what the parent takes out is never below what the child counts.
package delegation

import (
	"cmp"
	"math"
	"slices"
)

// Key names a receiving pool: a sub-entity and a pool in its namespace.
type Key struct {
	Entity string
	Pool   string
}

func (k Key) compare(o Key) int {
	if c := cmp.Compare(k.Entity, o.Entity); c != 0 {
		return c
	}
	return cmp.Compare(k.Pool, o.Pool)
}

// Ack is a child pool's acknowledgement of a parent pool: what it counts and
// the revision of the parent's offer it applied.
type Ack struct {
	Licenses int32
	Revision int64
}

// Out is one delegation as a parent pool's pass sees it: an entry of its spec,
// of its status, or both.
type Out struct {
	Key
	// InSpec: spec.delegations has an entry for Key; Spec is its licenses.
	InSpec bool
	Spec   int32
	// Valid: the entry of the spec names a sub-entity of the pool's entity
	// and a pool that exists. An invalid entry counts on neither side.
	Valid bool
	// Published is what status.delegated says for Key (zero when absent).
	Published Entry
	// Ack is the child pool's status.delegatedIn entry for this parent pool,
	// nil when there is none.
	Ack *Ack
	// ChildGone: the child pool does not exist and no user holds a license
	// of it, so nothing of what was offered is held any more.
	ChildGone bool
}

// Entry is a published delegation.
type Entry struct {
	Key
	// Licenses is what the parent takes out of its own capacity.
	Licenses int32
	// Offered is what the child may count, at most Licenses.
	Offered int32
	// Revision identifies the offer; it grows whenever Offered changes.
	Revision int64
}

// Plan is what a parent pool's pass does with its delegations.
type Plan struct {
	// Deducted is what the pass takes out of the pool's capacity.
	Deducted int64
	// Delegated is what to publish in status.delegated, sorted, without
	// entries that neither take out nor offer anything.
	Delegated []Entry
	// Short are the valid delegations the pool could not offer whole, for
	// want of licenses: how many of their licenses are missing.
	Short map[Key]int32
}

// PlanOut decides a parent pool's delegations; base is its capacity before
// delegations. Offers are served in the order of their keys from base.
func PlanOut(base int32, outs []Out) Plan {
	outs = slices.Clone(outs)
	slices.SortFunc(outs, func(a, b Out) int { return a.compare(b.Key) })
	plan := Plan{}
	avail := int64(max(base, 0))
	for _, o := range outs {
		target := int32(0)
		if o.InSpec && o.Valid {
			target = max(o.Spec, 0)
		}
		offer := int32(min(int64(target), avail))
		avail -= int64(offer)
		if short := target - offer; short > 0 {
			if plan.Short == nil {
				plan.Short = map[Key]int32{}
			}
			plan.Short[o.Key] = short
		}
		pub := o.Published
		// What the child may count: any spec with the offer it last read
		// (the published one), and what it acknowledged of the current
		// revision, or else what was taken out for it so far.
		held := pub.Licenses
		switch {
		case o.ChildGone:
			held = 0
		case o.Ack != nil && o.Ack.Revision == pub.Revision:
			held = o.Ack.Licenses
		}
		e := Entry{Key: o.Key, Offered: offer, Revision: pub.Revision,
			Licenses: max(offer, held, pub.Offered)}
		if o.ChildGone {
			e.Licenses = offer
		}
		if offer != pub.Offered {
			e.Revision++
		}
		plan.Deducted += int64(e.Licenses)
		if e.Licenses > 0 || e.Offered > 0 {
			plan.Delegated = append(plan.Delegated, e)
		}
	}
	return plan
}

// In is one parent pool's delegation to a child pool, as the child's pass
// sees it.
type In struct {
	// ParentPool is the delegating pool's name.
	ParentPool string
	// InSpec: the parent's spec.delegations names this child pool; Spec is
	// its licenses.
	InSpec bool
	Spec   int32
	// Published is the parent's status.delegated for this child pool (zero
	// when absent).
	Published Entry
}

// Counted is what a child pool counts of its parent pools' delegations.
type Counted struct {
	// Licenses is the sum added to the child pool's capacity.
	Licenses int64
	// Acks are the status.delegatedIn entries to write, one per parent pool
	// that names this pool in its spec or status, sorted by pool.
	Acks []InEntry
}

// InEntry is one status.delegatedIn entry.
type InEntry struct {
	ParentPool string
	Ack
}

// CountIn decides what a child pool counts.
func CountIn(ins []In) Counted {
	ins = slices.Clone(ins)
	slices.SortFunc(ins, func(a, b In) int { return cmp.Compare(a.ParentPool, b.ParentPool) })
	var c Counted
	for _, in := range ins {
		if !in.InSpec && in.Published == (Entry{}) {
			continue
		}
		n := int32(0)
		if in.InSpec {
			n = max(min(in.Spec, in.Published.Offered), 0)
		}
		c.Licenses += int64(n)
		c.Acks = append(c.Acks, InEntry{ParentPool: in.ParentPool, Ack: Ack{Licenses: n, Revision: in.Published.Revision}})
	}
	return c
}

// Apply adds delta (negative: taken out) to capacity, within 0 and MaxInt32.
func Apply(capacity int32, delta int64) int32 {
	return int32(min(max(int64(capacity)+delta, 0), math.MaxInt32))
}
