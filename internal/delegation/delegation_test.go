package delegation

import (
	"reflect"
	"testing"
)

func TestPlanOut(t *testing.T) {
	child := Key{Entity: "child", Pool: "default"}
	other := Key{Entity: "other", Pool: "default"}
	pub := func(k Key, licenses, offered int32, rev int64) Entry {
		return Entry{Key: k, Licenses: licenses, Offered: offered, Revision: rev}
	}
	tests := []struct {
		name     string
		base     int32
		outs     []Out
		deducted int64
		want     []Entry
		short    map[Key]int32
	}{
		{name: "new delegation is taken out and offered",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 4, Valid: true}},
			deducted: 4, want: []Entry{pub(child, 4, 4, 1)}},
		{name: "cut: offered at once, still taken out until the child applies it",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 2, Valid: true, Published: pub(child, 6, 6, 3), Ack: &Ack{6, 3}}},
			deducted: 6, want: []Entry{pub(child, 6, 2, 4)}},
		{name: "cut, acknowledged for an older offer",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 2, Valid: true, Published: pub(child, 6, 2, 4), Ack: &Ack{2, 2}}},
			deducted: 6, want: []Entry{pub(child, 6, 2, 4)}},
		{name: "cut applied",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 2, Valid: true, Published: pub(child, 6, 2, 4), Ack: &Ack{2, 4}}},
			deducted: 2, want: []Entry{pub(child, 2, 2, 4)}},
		{name: "removed, applied",
			base: 10, outs: []Out{{Key: child, Published: pub(child, 3, 0, 5), Ack: &Ack{0, 5}}}},
		{name: "invalid counts nowhere",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 5}}},
		{name: "invalid after valid: offer withdrawn, taken out until applied",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 5, Published: pub(child, 5, 5, 1), Ack: &Ack{5, 1}}},
			deducted: 5, want: []Entry{pub(child, 5, 0, 2)}},
		{name: "child pool gone",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 5, Published: pub(child, 5, 5, 1), ChildGone: true}}},
		{name: "more than the pool has: offered in order of entity",
			base: 6, outs: []Out{{Key: other, InSpec: true, Spec: 4, Valid: true}, {Key: child, InSpec: true, Spec: 4, Valid: true}},
			deducted: 6, want: []Entry{pub(child, 4, 4, 1), pub(other, 2, 2, 1)}, short: map[Key]int32{other: 2}},
		{name: "pool shrank below the delegation: offer cut, taken out until applied",
			base: 3, outs: []Out{{Key: child, InSpec: true, Spec: 8, Valid: true, Published: pub(child, 8, 8, 1), Ack: &Ack{8, 1}}},
			deducted: 8, want: []Entry{pub(child, 8, 3, 2)}, short: map[Key]int32{child: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanOut(tt.base, tt.outs)
			if got.Deducted != tt.deducted || !reflect.DeepEqual(got.Delegated, tt.want) || !reflect.DeepEqual(got.Short, tt.short) {
				t.Errorf("PlanOut = %+v, want deducted %d, delegated %v, short %v", got, tt.deducted, tt.want, tt.short)
			}
		})
	}
}

func TestCountIn(t *testing.T) {
	e := func(licenses, offered int32, rev int64) Entry {
		return Entry{Licenses: licenses, Offered: offered, Revision: rev}
	}
	got := CountIn([]In{
		{ParentPool: "b", InSpec: true, Spec: 5, Published: e(2, 2, 3)}, // raise not offered yet
		{ParentPool: "a", InSpec: true, Spec: 1, Published: e(4, 4, 7)}, // a cut of the spec counts at once
		{ParentPool: "c", Published: e(3, 0, 2)},                        // removed: 0, acknowledged
		{ParentPool: "d"},                                               // names another pool
	})
	want := Counted{Licenses: 3, Acks: []InEntry{{"a", Ack{1, 7}}, {"b", Ack{2, 3}}, {"c", Ack{0, 2}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CountIn = %+v, want %+v", got, want)
	}
}
