// Package delegation is the arithmetic of licenses a parent pool hands to the
// pools of its sub-entities (guarantee 10): how much the parent takes out of
// its own capacity, what it publishes, and what a child pool counts. It holds
// no I/O; the pool controller and admission gather its inputs.
//
// The handoff has two steps, each side acting only on what the other has
// written:
//
//   - the parent publishes in status.delegated what it has taken out of its
//     own capacity for a child pool, after writing the users that lose a
//     license to it;
//   - the child counts min(published, spec) of its parent's pools: a raise
//     counts once the parent has published it, a cut at once (counting less is
//     always safe). After writing its own users that lose a license, it
//     acknowledges in status.delegatedIn the parent generation it applied;
//   - the parent gives a cut back to itself only once the child acknowledged
//     the current generation of its spec, since from then on the child counts
//     at most that generation's spec. Until then it keeps deducting what it
//     published before. A lowered value is published before the parent counts
//     it (Deducted stays at the old value in that pass), so that a child
//     reading a newer spec never pairs it with an older, higher publication.
//
// Whatever the order of the passes and however stale either side's cache, the
// parent's deduction is never below what the child counts.
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
// the parent pool generation it applied.
type Ack struct {
	Licenses   int32
	Generation int64
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
	// Published is what status.delegated says for Key (0 when absent).
	Published int32
	// Ack is the child pool's status.delegatedIn entry for this parent pool,
	// nil when there is none.
	Ack *Ack
	// ChildGone: the child pool does not exist and no user holds a license
	// of it, so nothing of what was published is held any more.
	ChildGone bool
}

// Entry is a published delegation.
type Entry struct {
	Key
	Licenses int32
}

// Plan is what a parent pool's pass does with its delegations.
type Plan struct {
	// Deducted is what the pass takes out of the pool's capacity.
	Deducted int64
	// Delegated is what to publish in status.delegated, sorted, without
	// zeros.
	Delegated []Entry
	// Short are the valid delegations the pool could not honour whole, for
	// want of licenses: how many of their licenses are missing.
	Short map[Key]int32
}

// PlanOut decides a parent pool's delegations: base is its capacity before
// delegations, generation its metadata.generation.
func PlanOut(base int32, generation int64, outs []Out) Plan {
	outs = slices.Clone(outs)
	slices.SortFunc(outs, func(a, b Out) int { return a.compare(b.Key) })

	// committed is what the child may still count of each entry: the parent
	// keeps deducting it this pass whatever it publishes.
	committed := make([]int64, len(outs))
	floors := make([]int32, len(outs))
	var total int64
	for i, o := range outs {
		floors[i] = floor(o, generation)
		committed[i] = int64(max(floors[i], o.Published))
		total += committed[i]
	}
	avail := max(int64(base)-total, 0)

	plan := Plan{}
	for i, o := range outs {
		target := int32(0)
		if o.InSpec && o.Valid {
			target = max(o.Spec, 0)
		}
		d := int64(max(target, floors[i]))
		if int64(target) > committed[i] {
			grant := min(int64(target)-committed[i], avail)
			avail -= grant
			d = committed[i] + grant
			if short := int64(target) - d; short > 0 {
				if plan.Short == nil {
					plan.Short = map[Key]int32{}
				}
				plan.Short[o.Key] = int32(short)
			}
		}
		plan.Deducted += max(d, committed[i])
		if d > 0 {
			plan.Delegated = append(plan.Delegated, Entry{Key: o.Key, Licenses: int32(min(d, math.MaxInt32))})
		}
	}
	return plan
}

// floor is the least the parent may deduct for o: what the child may still
// count of it.
func floor(o Out, generation int64) int32 {
	switch {
	case o.ChildGone:
		return 0
	case o.InSpec && !o.Valid:
		// The child may see the entry otherwise than the parent does (a pool
		// recreated, a hierarchy the cache shows late): what was published
		// stays taken out until the child pool is gone or the entry fixed.
		return o.Published
	case o.Ack != nil && o.Ack.Generation == generation:
		// The child applied this generation: from now on it counts at most
		// its spec, which the target covers.
		return o.Ack.Licenses
	default:
		return o.Published
	}
}

// In is one parent pool's delegation to a child pool, as the child's pass
// sees it.
type In struct {
	// ParentPool is the delegating pool's name.
	ParentPool string
	// Generation is the parent pool's metadata.generation.
	Generation int64
	// InSpec: the parent's spec.delegations names this child pool; Spec is
	// its licenses.
	InSpec bool
	Spec   int32
	// Published is the parent's status.delegated for this child pool (0 when
	// absent).
	Published int32
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
		if !in.InSpec && in.Published <= 0 {
			continue
		}
		n := int32(0)
		if in.InSpec {
			n = max(min(in.Spec, in.Published), 0)
		}
		c.Licenses += int64(n)
		c.Acks = append(c.Acks, InEntry{ParentPool: in.ParentPool, Ack: Ack{Licenses: n, Generation: in.Generation}})
	}
	return c
}

// Apply adds delta (negative: taken out) to capacity, within 0 and MaxInt32.
func Apply(capacity int32, delta int64) int32 {
	return int32(min(max(int64(capacity)+delta, 0), math.MaxInt32))
}
