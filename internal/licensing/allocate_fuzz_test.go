package licensing

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// claimsFromBytes builds a pool from fuzz input, four bytes per user:
// name prefix, creation time, flags (bit 0 wants, bit 1 holds), license time.
// Times come from a small range so that ties are common, and the one-letter
// name prefix makes name order independent of input order; the index suffix
// keeps names unique.
func claimsFromBytes(data []byte) []Claim {
	const width, most = 4, 64
	n := min(len(data)/width, most)
	claims := make([]Claim, n)
	for i := range claims {
		b := data[i*width : (i+1)*width]
		c := &claims[i]
		c.Name = string(rune('a'+b[0]%6)) + strconv.Itoa(i)
		c.CreatedAt = base.Add(time.Duration(b[1]%16) * time.Second)
		c.Wants = b[2]&1 != 0
		if b[2]&2 != 0 {
			c.HeldSince = ptr(base.Add(time.Duration(b[3]%16) * time.Second))
		}
	}
	return claims
}

func FuzzAllocate(f *testing.F) {
	f.Add(int8(0), []byte{})
	f.Add(int8(3), []byte{0, 1, 1, 0, 1, 2, 1, 0, 2, 1, 3, 5, 3, 0, 3, 5})
	f.Add(int8(1), []byte{0, 1, 3, 4, 1, 2, 3, 4, 2, 3, 3, 2, 3, 0, 1, 0, 4, 0, 2, 1})
	f.Add(int8(-2), []byte{5, 5, 3, 5, 4, 4, 1, 4, 3, 3, 2, 3})
	f.Add(int8(2), []byte{0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 3, 0})
	f.Add(int8(127), []byte("the quick brown fox jumps over the lazy dog"))

	f.Fuzz(func(t *testing.T, capacity int8, data []byte) {
		claims := claimsFromBytes(data)
		now := base.Add(time.Hour)
		before := cloneClaims(claims)
		got := Allocate(int32(capacity), now, claims)
		if !slices.EqualFunc(before, claims, claimEqual) {
			t.Fatalf("Allocate modified its claims")
		}
		checkInvariants(t, int32(capacity), now, claims, got)
		checkOracle(t, int32(capacity), claims, got)

		// The decision depends on the users, not on the order the
		// controller happens to list them in.
		rev := slices.Clone(claims)
		slices.Reverse(rev)
		again := Allocate(int32(capacity), now, rev)
		for i, d := range again.Decisions {
			o := got.Decisions[len(claims)-1-i]
			if d.Name != o.Name || d.Outcome != o.Outcome || d.Position != o.Position || d.Licensed != o.Licensed {
				t.Fatalf("reversed input: %s is %v/%d, was %v/%d", d.Name, d.Outcome, d.Position, o.Outcome, o.Position)
			}
		}

		// Applying the result and allocating again is a fixed point: every
		// holder keeps its license, every waiting user keeps its place.
		applied := slices.Clone(claims)
		for i, d := range got.Decisions {
			applied[i].HeldSince = d.Since
		}
		revoked := 0
		for _, d := range got.Decisions {
			if d.Outcome == Revoked {
				revoked++
			}
		}
		next := Allocate(int32(capacity), now.Add(time.Minute), applied)
		for i, d := range next.Decisions {
			o := got.Decisions[i]
			want := o.Outcome
			switch o.Outcome {
			case Granted:
				want = Kept
			case Released:
				want = Unlicensed
			case Revoked:
				// The revoked users join the queue by creation time, so the
				// positions are not carried over; only the outcome is.
				want = Waiting
			}
			if d.Outcome != want {
				t.Fatalf("second pass: %s is %v, want %v after %v", d.Name, d.Outcome, want, o.Outcome)
			}
			// Users revoked in the first pass may join the queue ahead of a
			// waiting user, so its place can only grow, and only then.
			if o.Outcome == Waiting {
				if d.Position < o.Position || (revoked == 0 && d.Position != o.Position) {
					t.Fatalf("second pass: %s moved from position %d to %d with %d revoked",
						d.Name, o.Position, d.Position, revoked)
				}
			}
		}
		if next.Licensed != got.Licensed {
			t.Fatalf("second pass licenses %d, first %d", next.Licensed, got.Licensed)
		}
	})
}

// heldKey and queueKey are the orders of rules 3 and 4.
func heldKey(a, b Claim) int {
	if c := a.HeldSince.Compare(*b.HeldSince); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

func queueKey(a, b Claim) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// checkInvariants checks the rules directly, without recomputing the answer.
func checkInvariants(t *testing.T, capacity int32, now time.Time, claims []Claim, got Allocation) {
	t.Helper()
	limit := max(capacity, 0)
	if len(got.Decisions) != len(claims) {
		t.Fatalf("%d decisions for %d claims", len(got.Decisions), len(claims))
	}

	var licensed, waiting int32
	var newestKept, oldestRevoked, newestGranted, oldestWaiting *Claim
	var positions []int
	for i, d := range got.Decisions {
		c := &claims[i]
		if d.Name != c.Name {
			t.Fatalf("decision %d is for %q, claim is %q", i, d.Name, c.Name)
		}
		checkSince(t, *c, d, now)
		if d.Position != 0 && d.Outcome != Waiting {
			t.Fatalf("%s is %v with position %d", c.Name, d.Outcome, d.Position)
		}
		held := c.HeldSince != nil
		switch d.Outcome {
		case Unlicensed:
			if c.Wants || held {
				t.Fatalf("%s unlicensed but wants %v holds %v", c.Name, c.Wants, held)
			}
		case Kept:
			if !c.Wants || !held {
				t.Fatalf("%s kept but wants %v holds %v", c.Name, c.Wants, held)
			}
			licensed++
			if newestKept == nil || heldKey(*c, *newestKept) > 0 {
				newestKept = c
			}
		case Revoked:
			if !c.Wants || !held {
				t.Fatalf("%s revoked but wants %v holds %v", c.Name, c.Wants, held)
			}
			if oldestRevoked == nil || heldKey(*c, *oldestRevoked) < 0 {
				oldestRevoked = c
			}
		case Released:
			if c.Wants || !held {
				t.Fatalf("%s released but wants %v holds %v", c.Name, c.Wants, held)
			}
		case Granted:
			if !c.Wants || held {
				t.Fatalf("%s granted but wants %v holds %v", c.Name, c.Wants, held)
			}
			licensed++
			if newestGranted == nil || queueKey(*c, *newestGranted) > 0 {
				newestGranted = c
			}
		case Waiting:
			if !c.Wants || held {
				t.Fatalf("%s waiting but wants %v holds %v", c.Name, c.Wants, held)
			}
			waiting++
			positions = append(positions, d.Position)
			if oldestWaiting == nil || queueKey(*c, *oldestWaiting) < 0 {
				oldestWaiting = c
			}
		default:
			t.Fatalf("%s has unknown outcome %v", c.Name, d.Outcome)
		}
	}

	if licensed > limit {
		t.Fatalf("%d licensed, capacity %d", licensed, capacity)
	}
	if got.Licensed != licensed || got.Waiting != waiting || got.Available != limit-licensed {
		t.Fatalf("counts %d/%d/%d, decisions say %d/%d/%d",
			got.Licensed, got.Waiting, got.Available, licensed, waiting, limit-licensed)
	}
	if got.Available < 0 {
		t.Fatalf("available %d", got.Available)
	}
	if newestKept != nil && oldestRevoked != nil && heldKey(*oldestRevoked, *newestKept) < 0 {
		t.Fatalf("%s revoked while newer holder %s kept", oldestRevoked.Name, newestKept.Name)
	}
	if oldestRevoked != nil && licensed != limit {
		t.Fatalf("%s revoked with %d of %d licensed", oldestRevoked.Name, licensed, limit)
	}
	if oldestRevoked != nil && newestGranted != nil {
		t.Fatalf("%s granted in a pass that revokes %s", newestGranted.Name, oldestRevoked.Name)
	}
	if newestGranted != nil && oldestWaiting != nil && queueKey(*oldestWaiting, *newestGranted) < 0 {
		t.Fatalf("%s waits while newer %s was granted", oldestWaiting.Name, newestGranted.Name)
	}
	if waiting > 0 && licensed != limit {
		t.Fatalf("%d waiting with %d of %d licensed", waiting, licensed, limit)
	}
	slices.Sort(positions)
	for i, p := range positions {
		if p != i+1 {
			t.Fatalf("waiting positions %v, want 1..%d", positions, len(positions))
		}
	}
}

// checkOracle recomputes every decision from the rules by counting, with no
// sorting, and compares: a claim's rank in its group is the number of claims
// of the group that come before it.
func checkOracle(t *testing.T, capacity int32, claims []Claim, got Allocation) {
	t.Helper()
	limit := int(max(capacity, 0))
	isHolder := func(c Claim) bool { return c.Wants && c.HeldSince != nil }
	isWaiter := func(c Claim) bool { return c.Wants && c.HeldSince == nil }

	holders := 0
	for _, c := range claims {
		if isHolder(c) {
			holders++
		}
	}
	free := max(limit-holders, 0)

	for i, c := range claims {
		var want Outcome
		var pos int
		switch {
		case isHolder(c):
			rank := 0
			for _, o := range claims {
				if isHolder(o) && heldKey(o, c) < 0 {
					rank++
				}
			}
			want = Kept
			if rank >= limit {
				want = Revoked
			}
		case isWaiter(c):
			rank := 0
			for _, o := range claims {
				if isWaiter(o) && queueKey(o, c) < 0 {
					rank++
				}
			}
			want = Granted
			if rank >= free {
				want, pos = Waiting, rank-free+1
			}
		case c.HeldSince != nil:
			want = Released
		default:
			want = Unlicensed
		}
		if d := got.Decisions[i]; d.Outcome != want || d.Position != pos {
			t.Fatalf("%s: got %v/%d, want %v/%d", c.Name, d.Outcome, d.Position, want, pos)
		}
	}
}
