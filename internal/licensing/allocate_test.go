package licensing

import (
	"math"
	"slices"
	"testing"
	"time"
)

var base = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// at is base plus s seconds: creation and license times in the tests.
func at(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

func ptr(t time.Time) *time.Time { return &t }

// holder wants a license and holds one since at(since).
func holder(name string, created, since int) Claim {
	return Claim{Name: name, CreatedAt: at(created), Wants: true, HeldSince: ptr(at(since))}
}

// waiter wants a license and holds none.
func waiter(name string, created int) Claim {
	return Claim{Name: name, CreatedAt: at(created), Wants: true}
}

// leaver holds a license since at(since) but no longer wants it.
func leaver(name string, created, since int) Claim {
	return Claim{Name: name, CreatedAt: at(created), HeldSince: ptr(at(since))}
}

// idle neither wants nor holds a license.
func idle(name string, created int) Claim {
	return Claim{Name: name, CreatedAt: at(created)}
}

// want is the expected decision for one claim. Since is checked as a value:
// for Kept it must be the claim's HeldSince, for Granted the pass's now.
type want struct {
	outcome  Outcome
	position int
}

var now = at(1000)

func TestAllocate(t *testing.T) {
	tests := []struct {
		name     string
		capacity int32
		claims   []Claim
		want     []want // one per claim, in input order
		// Expected counts.
		licensed, waiting, available int32
	}{
		{
			name:      "empty pool",
			capacity:  5,
			available: 5,
		},
		{
			name:      "empty pool, zero capacity",
			capacity:  0,
			available: 0,
		},
		{
			name:     "all fit",
			capacity: 5,
			claims: []Claim{
				holder("alice", 1, 10), waiter("bob", 2), idle("carol", 3), waiter("dave", 4),
			},
			want:     []want{{Kept, 0}, {Granted, 0}, {Unlicensed, 0}, {Granted, 0}},
			licensed: 3, available: 2,
		},
		{
			name:     "exact fit",
			capacity: 3,
			claims: []Claim{
				holder("alice", 1, 10), waiter("bob", 2), waiter("dave", 4),
			},
			want:     []want{{Kept, 0}, {Granted, 0}, {Granted, 0}},
			licensed: 3, available: 0,
		},
		{
			name:     "queue by creation time then name",
			capacity: 2,
			claims: []Claim{
				waiter("carol", 3), waiter("bob", 1), waiter("dave", 2), waiter("alice", 1), waiter("erin", 2),
			},
			// alice(1) bob(1) | dave(2) erin(2) carol(3)
			want:     []want{{Waiting, 3}, {Granted, 0}, {Waiting, 1}, {Granted, 0}, {Waiting, 2}},
			licensed: 2, waiting: 3, available: 0,
		},
		{
			name:     "waiting user older than a holder does not take its license",
			capacity: 1,
			claims: []Claim{
				holder("young", 50, 60), waiter("old", 1),
			},
			want:     []want{{Kept, 0}, {Waiting, 1}},
			licensed: 1, waiting: 1,
		},
		{
			name:     "deactivated holder frees its license for the first waiter in the same pass",
			capacity: 2,
			claims: []Claim{
				holder("alice", 1, 10), leaver("bob", 2, 11), waiter("dave", 5), waiter("carol", 4),
			},
			want:     []want{{Kept, 0}, {Released, 0}, {Waiting, 1}, {Granted, 0}},
			licensed: 2, waiting: 1,
		},
		{
			name:     "holder stops wanting while others wait and none can be served",
			capacity: 1,
			claims: []Claim{
				leaver("bob", 2, 11), holder("alice", 1, 10), waiter("carol", 4),
			},
			want:     []want{{Released, 0}, {Kept, 0}, {Waiting, 1}},
			licensed: 1, waiting: 1,
		},
		{
			name:     "all holders leave, waiters take every license",
			capacity: 2,
			claims: []Claim{
				leaver("a", 1, 10), leaver("b", 2, 11), waiter("c", 3), waiter("d", 4), waiter("e", 5),
			},
			want:     []want{{Released, 0}, {Released, 0}, {Granted, 0}, {Granted, 0}, {Waiting, 1}},
			licensed: 2, waiting: 1,
		},
		{
			name:     "shrink revokes the most recently licensed first",
			capacity: 2,
			claims: []Claim{
				// Licensed order: alice(10) carol(20) bob(30) dave(40).
				holder("dave", 1, 40), holder("bob", 2, 30), holder("alice", 3, 10), holder("carol", 4, 20),
			},
			want:     []want{{Revoked, 0}, {Revoked, 0}, {Kept, 0}, {Kept, 0}},
			licensed: 2,
		},
		{
			name:     "shrink breaks license-time ties by name",
			capacity: 3,
			claims: []Claim{
				// Licensed order: alice(10) carol(20) bob(30) dave(30).
				holder("dave", 1, 30), holder("bob", 2, 30), holder("alice", 3, 10), holder("carol", 4, 20),
			},
			want:     []want{{Revoked, 0}, {Kept, 0}, {Kept, 0}, {Kept, 0}},
			licensed: 3,
		},
		{
			name:     "holders licensed at the same time keep by name",
			capacity: 2,
			claims: []Claim{
				holder("c", 1, 10), holder("a", 3, 10), holder("b", 2, 10),
			},
			want:     []want{{Revoked, 0}, {Kept, 0}, {Kept, 0}},
			licensed: 2,
		},
		{
			name:     "shrink keeps waiters waiting and still releases leavers",
			capacity: 1,
			claims: []Claim{
				holder("a", 5, 20), leaver("b", 1, 5), holder("c", 6, 30), waiter("w2", 3), waiter("w1", 2), idle("x", 0),
			},
			want:     []want{{Kept, 0}, {Released, 0}, {Revoked, 0}, {Waiting, 2}, {Waiting, 1}, {Unlicensed, 0}},
			licensed: 1, waiting: 2,
		},
		{
			name:     "shrink exactly to the number of holders revokes nobody",
			capacity: 2,
			claims: []Claim{
				holder("a", 1, 20), holder("b", 2, 10), waiter("c", 0),
			},
			want:     []want{{Kept, 0}, {Kept, 0}, {Waiting, 1}},
			licensed: 2, waiting: 1,
		},
		{
			name:     "zero capacity",
			capacity: 0,
			claims: []Claim{
				holder("a", 1, 10), waiter("b", 2), leaver("c", 3, 11), idle("d", 4), waiter("e", 1),
			},
			want:    []want{{Revoked, 0}, {Waiting, 2}, {Released, 0}, {Unlicensed, 0}, {Waiting, 1}},
			waiting: 2,
		},
		{
			name:     "negative capacity counts as zero",
			capacity: -3,
			claims: []Claim{
				holder("a", 1, 10), waiter("b", 2), leaver("c", 3, 11), idle("d", 4),
			},
			want:    []want{{Revoked, 0}, {Waiting, 1}, {Released, 0}, {Unlicensed, 0}},
			waiting: 1,
		},
		{
			name:     "most negative capacity",
			capacity: math.MinInt32,
			claims:   []Claim{waiter("a", 1)},
			want:     []want{{Waiting, 1}},
			waiting:  1,
		},
		{
			name:     "largest capacity",
			capacity: math.MaxInt32,
			claims:   []Claim{holder("a", 1, 10), waiter("b", 2)},
			want:     []want{{Kept, 0}, {Granted, 0}},
			licensed: 2, available: math.MaxInt32 - 2,
		},
		{
			name:      "nobody wants a license",
			capacity:  2,
			claims:    []Claim{idle("a", 1), leaver("b", 2, 3)},
			want:      []want{{Unlicensed, 0}, {Released, 0}},
			available: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := cloneClaims(tt.claims)
			got := Allocate(tt.capacity, now, tt.claims)

			if !slices.EqualFunc(before, tt.claims, claimEqual) {
				t.Errorf("Allocate modified its claims")
			}
			if len(got.Decisions) != len(tt.claims) {
				t.Fatalf("got %d decisions for %d claims", len(got.Decisions), len(tt.claims))
			}
			for i, d := range got.Decisions {
				c, w := tt.claims[i], tt.want[i]
				if d.Name != c.Name {
					t.Errorf("decision %d is for %q, want %q", i, d.Name, c.Name)
				}
				if d.Outcome != w.outcome || d.Position != w.position {
					t.Errorf("%s: got %v at position %d, want %v at position %d",
						c.Name, d.Outcome, d.Position, w.outcome, w.position)
				}
				checkSince(t, c, d, now)
			}
			if got.Licensed != tt.licensed || got.Waiting != tt.waiting || got.Available != tt.available {
				t.Errorf("counts: licensed %d waiting %d available %d, want %d %d %d",
					got.Licensed, got.Waiting, got.Available, tt.licensed, tt.waiting, tt.available)
			}
		})
	}
}

// checkSince checks Licensed and Since against the outcome.
func checkSince(t *testing.T, c Claim, d Decision, now time.Time) {
	t.Helper()
	switch d.Outcome {
	case Kept:
		if !d.Licensed || d.Since == nil || !d.Since.Equal(*c.HeldSince) {
			t.Errorf("%s kept: licensed %v since %v, want licensed since %v", c.Name, d.Licensed, d.Since, *c.HeldSince)
		}
	case Granted:
		if !d.Licensed || d.Since == nil || !d.Since.Equal(now) {
			t.Errorf("%s granted: licensed %v since %v, want licensed since %v", c.Name, d.Licensed, d.Since, now)
		}
	default:
		if d.Licensed || d.Since != nil {
			t.Errorf("%s %v: licensed %v since %v, want unlicensed with no time", c.Name, d.Outcome, d.Licensed, d.Since)
		}
	}
}

func cloneClaims(cs []Claim) []Claim {
	out := slices.Clone(cs)
	for i := range out {
		if out[i].HeldSince != nil {
			out[i].HeldSince = ptr(*out[i].HeldSince)
		}
	}
	return out
}

func claimEqual(a, b Claim) bool {
	if a.Name != b.Name || a.CreatedAt != b.CreatedAt || a.Wants != b.Wants {
		return false
	}
	if (a.HeldSince == nil) != (b.HeldSince == nil) {
		return false
	}
	return a.HeldSince == nil || a.HeldSince.Equal(*b.HeldSince)
}

func TestAllocateNilClaims(t *testing.T) {
	got := Allocate(3, now, nil)
	if len(got.Decisions) != 0 || got.Licensed != 0 || got.Waiting != 0 || got.Available != 3 {
		t.Errorf("got %+v", got)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{
		Unlicensed:  "Unlicensed",
		Kept:        "Kept",
		Granted:     "Granted",
		Waiting:     "Waiting",
		Revoked:     "Revoked",
		Released:    "Released",
		Outcome(-1): "Outcome(-1)",
		Outcome(6):  "Outcome(6)",
	} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), got, want)
		}
	}
}

func TestChanged(t *testing.T) {
	a := Allocate(2, now, []Claim{
		holder("a", 1, 10), leaver("b", 2, 11), holder("c", 3, 12), holder("d", 4, 13), waiter("e", 5), idle("f", 6),
	})
	lost, gained := a.Changed()
	names := func(ds []Decision) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Name+"="+d.Outcome.String())
		}
		return out
	}
	if got, want := names(lost), []string{"b=Released", "d=Revoked"}; !slices.Equal(got, want) {
		t.Errorf("lost = %v, want %v", got, want)
	}
	if len(gained) != 0 {
		t.Errorf("gained = %v, want none", names(gained))
	}

	a = Allocate(2, now, []Claim{leaver("a", 1, 10), waiter("b", 2), holder("c", 3, 12)})
	lost, gained = a.Changed()
	if got, want := names(lost), []string{"a=Released"}; !slices.Equal(got, want) {
		t.Errorf("lost = %v, want %v", got, want)
	}
	if got, want := names(gained), []string{"b=Granted"}; !slices.Equal(got, want) {
		t.Errorf("gained = %v, want %v", got, want)
	}

	lost, gained = Allocate(2, now, []Claim{holder("a", 1, 10)}).Changed()
	if lost != nil || gained != nil {
		t.Errorf("quiet pass: lost %v gained %v, want nil", lost, gained)
	}
}

// TestAllocateAllocations pins the allocation budget that keeps large pools
// cheap to reconcile.
func TestAllocateAllocations(t *testing.T) {
	fits := []Claim{holder("a", 1, 10), holder("b", 2, 11), idle("c", 3)}
	grants := []Claim{holder("a", 1, 10), waiter("b", 2)}
	queue := []Claim{holder("a", 1, 10), waiter("b", 2), waiter("c", 1)}
	shrink := []Claim{holder("a", 1, 10), holder("b", 2, 11), waiter("c", 1)}
	for _, tc := range []struct {
		name     string
		capacity int32
		claims   []Claim
		max      float64
	}{
		{"everyone kept", 5, fits, 1},
		{"grants without queue", 5, grants, 2},
		{"grants with queue", 2, queue, 3},
		{"shrink", 1, shrink, 2},
	} {
		if got := testing.AllocsPerRun(100, func() { Allocate(tc.capacity, now, tc.claims) }); got > tc.max {
			t.Errorf("%s: %v allocations, want at most %v", tc.name, got, tc.max)
		}
	}
}
