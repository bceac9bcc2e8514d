// Package licensing decides which users of a license pool hold one of the
// pool's named licenses.
//
// A member organisation buys a pool with a fixed number of named licenses.
// Every active user that names the pool wants one; the operator reconciles
// the pool and calls Allocate with the pool's capacity and all its users. The
// rules, and why they are what they are:
//
//  1. Never over-allocate: after a pass at most capacity users hold a
//     license. The capacity is what the organisation pays for; a seat beyond
//     it is an unpaid seat, so no tie or rounding ever grants one more.
//  2. Stable: a user that holds a license and still wants it keeps it. A
//     named license is a person's access to meetings; moving it on every
//     reconcile would cut people off mid-meeting and make status flap. So a
//     waiting user never takes a license from a holder, however long it has
//     waited or however old its account is.
//  3. Shrink revokes the most recently licensed first (holders ordered by the
//     time they were licensed, then by name; the tail loses). The users
//     licensed longest have the most established use, and last-in first-out
//     makes revocation predictable: the order in which users got their
//     license is the order in which they keep it. The name breaks ties so
//     every reconcile picks the same users.
//  4. Waiting users are served first come, first served: by creation time,
//     then by name, while licenses are free. Creation time never changes, so
//     the queue does not reshuffle between passes; the name breaks ties
//     because creation times have a coarse (one second) resolution.
//  5. A holder that no longer wants a license (deactivated, moved to another
//     pool) releases it, and the license goes to the first waiting user in
//     the same pass, so swapping one user for another takes one reconcile and
//     no license sits idle in between.
//  6. A negative capacity counts as zero: a misconfigured pool licenses
//     nobody rather than failing the reconcile.
//
// A revoked user still wants a license but gets none in the pass that
// revokes it: capacity shrank, so nothing is free. Once the operator records
// that it no longer holds one, it waits in the queue by its creation time like
// any other user; its former license gives it no seniority.
//
// Allocate is a pure function of its input, so a reconcile that is repeated
// with the same users makes the same decisions, and applying a result and
// allocating again changes nothing (every holder is Kept, every waiting user
// keeps its place).
//
// Names must be unique within a pool. Allocate does not check: duplicates are
// decided as distinct users, ordered among equal keys by their input order.
package licensing

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Claim is one user as the allocator sees it.
type Claim struct {
	Name      string    // unique within the pool's namespace
	CreatedAt time.Time // the user's creation time: the queue order
	Wants     bool      // active and naming this pool: wants a license here
	// HeldSince is non-nil when the user currently holds a license of this pool
	// (the time it was granted). A holder keeps its original time.
	HeldSince *time.Time
}

// Outcome is what a pass decided for one claim.
type Outcome int

const (
	Unlicensed Outcome = iota // does not want a license and holds none
	Kept                      // held a license and keeps it
	Granted                   // newly licensed in this pass
	Waiting                   // wants one, none free
	Revoked                   // held one, still wants it, lost it because capacity shrank
	Released                  // held one, no longer wants it
)

var outcomeNames = [...]string{
	Unlicensed: "Unlicensed",
	Kept:       "Kept",
	Granted:    "Granted",
	Waiting:    "Waiting",
	Revoked:    "Revoked",
	Released:   "Released",
}

// String returns the outcome's name, as used in status conditions and events.
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Decision is the outcome for one claim.
type Decision struct {
	Name     string
	Outcome  Outcome
	Licensed bool // Kept or Granted
	// Since is the time the user is licensed since: the claim's own HeldSince
	// pointer for Kept, a copy of now (shared by all grants of the pass) for
	// Granted, nil otherwise. It is shared rather than copied per decision to
	// keep large pools cheap, so treat it as read-only.
	Since    *time.Time
	Position int // 1-based position in the waiting queue for Waiting, 0 otherwise
}

// Allocation is the result of one pass over a pool.
type Allocation struct {
	Decisions []Decision // one per claim, in the order of the input claims
	Licensed  int32      // holders after this pass
	Waiting   int32      // claims still waiting (Outcome Waiting; revoked users are not counted)
	Available int32      // capacity - Licensed, never negative
}

// Allocate decides who holds a license of a pool with the given capacity.
// It does not modify claims. now is the time stamped on new grants.
//
// It runs in O(n log n) for n claims and allocates at most three times: the
// decisions, one index slice when some claims must be ordered, and the grant
// time when something is granted. Pools where everyone fits are decided
// without sorting at all.
func Allocate(capacity int32, now time.Time, claims []Claim) Allocation {
	if len(claims) > math.MaxInt32 {
		// The counts are int32 like the capacity; no pool comes near this.
		panic("licensing: more than MaxInt32 claims")
	}
	capacity = max(capacity, 0)
	decisions := make([]Decision, len(claims))

	// First pass: settle the claims that need no ordering and count the rest,
	// so the common case (everyone fits) needs neither an index slice nor a
	// sort.
	var holders, waiters int32
	for i := range claims {
		c := &claims[i]
		decisions[i].Name = c.Name
		switch {
		case c.HeldSince != nil && c.Wants:
			holders++
		case c.HeldSince != nil:
			decisions[i].Outcome = Released
		case c.Wants:
			waiters++
		}
		// Neither holding nor wanting: the zero Decision is Unlicensed.
	}

	kept := min(holders, capacity)
	granted := min(waiters, capacity-kept)
	waiting := waiters - granted
	// Holders need ordering only when some must go; waiters need it whenever
	// some stay behind, because each waiting user is told its position.
	sortHolders := holders > kept
	sortWaiters := waiting > 0

	var since *time.Time
	if granted > 0 {
		since = new(time.Time)
		*since = now
	}

	// One index slice serves both groups: holders fill it from the front,
	// waiters from the back. Indices rather than copies keep the sort moving
	// four bytes per swap instead of a whole claim.
	var n int32
	if sortHolders {
		n += holders
	}
	if sortWaiters {
		n += waiters
	}
	var idx []int32
	if n > 0 {
		idx = make([]int32, n)
	}
	h, w := int32(0), n
	for i := range claims {
		c := &claims[i]
		if !c.Wants {
			continue
		}
		d := &decisions[i]
		switch {
		case c.HeldSince != nil && sortHolders:
			idx[h] = int32(i)
			h++
		case c.HeldSince != nil:
			d.Outcome, d.Licensed, d.Since = Kept, true, c.HeldSince
		case sortWaiters:
			w--
			idx[w] = int32(i)
		default:
			d.Outcome, d.Licensed, d.Since = Granted, true, since
		}
	}

	if sortHolders {
		hs := idx[:h]
		slices.SortFunc(hs, func(a, b int32) int {
			ca, cb := &claims[a], &claims[b]
			if c := ca.HeldSince.Compare(*cb.HeldSince); c != 0 {
				return c
			}
			if c := strings.Compare(ca.Name, cb.Name); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		for k, i := range hs {
			d := &decisions[i]
			if int32(k) < kept {
				d.Outcome, d.Licensed, d.Since = Kept, true, claims[i].HeldSince
			} else {
				d.Outcome = Revoked
			}
		}
	}

	if sortWaiters {
		ws := idx[w:]
		slices.SortFunc(ws, func(a, b int32) int {
			ca, cb := &claims[a], &claims[b]
			if c := ca.CreatedAt.Compare(cb.CreatedAt); c != 0 {
				return c
			}
			if c := strings.Compare(ca.Name, cb.Name); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		for k, i := range ws {
			d := &decisions[i]
			if int32(k) < granted {
				d.Outcome, d.Licensed, d.Since = Granted, true, since
			} else {
				d.Outcome, d.Position = Waiting, k-int(granted)+1
			}
		}
	}

	licensed := kept + granted
	return Allocation{
		Decisions: decisions,
		Licensed:  licensed,
		Waiting:   waiting,
		Available: capacity - licensed,
	}
}

// Changed returns the decisions that change who holds a license: lost holds
// the Revoked and Released ones, gained the Granted ones, each in input order.
// Both are nil when nothing changed, so a quiet reconcile allocates nothing.
func (a Allocation) Changed() (lost, gained []Decision) {
	for _, d := range a.Decisions {
		switch d.Outcome {
		case Revoked, Released:
			lost = append(lost, d)
		case Granted:
			gained = append(gained, d)
		}
	}
	return lost, gained
}
