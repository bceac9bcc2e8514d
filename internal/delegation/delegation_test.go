package delegation

import (
	"reflect"
	"testing"
)

func TestPlanOut(t *testing.T) {
	child := Key{Entity: "child", Pool: "default"}
	other := Key{Entity: "other", Pool: "default"}
	tests := []struct {
		name     string
		base     int32
		outs     []Out
		deducted int64
		want     []Entry
		short    map[Key]int32
	}{
		{name: "new delegation is taken out before it is published",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 4, Valid: true}},
			deducted: 4, want: []Entry{{child, 4}}},
		{name: "cut waits for the child to apply this generation",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 2, Valid: true, Published: 6, Ack: &Ack{6, 1}}},
			deducted: 6, want: []Entry{{child, 6}}},
		{name: "cut applied: published lower, still deducted this pass",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 2, Valid: true, Published: 6, Ack: &Ack{2, 2}}},
			deducted: 6, want: []Entry{{child, 2}}},
		{name: "cut applied and published",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 2, Valid: true, Published: 2, Ack: &Ack{2, 2}}},
			deducted: 2, want: []Entry{{child, 2}}},
		{name: "removed, child applied",
			base: 10, outs: []Out{{Key: child, Published: 3, Ack: &Ack{0, 2}}},
			deducted: 3},
		{name: "invalid counts nowhere",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 5}}},
		{name: "invalid after valid keeps what was published until the pool is gone",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 5, Published: 5, Ack: &Ack{5, 1}}},
			deducted: 5, want: []Entry{{child, 5}}},
		{name: "child pool gone: unpublished, then no longer deducted",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 5, Published: 5, ChildGone: true}},
			deducted: 5},
		{name: "child pool gone, unpublished",
			base: 10, outs: []Out{{Key: child, InSpec: true, Spec: 5, ChildGone: true}}},
		{name: "more than the pool has: the first in order gets what is left",
			base: 6, outs: []Out{{Key: other, InSpec: true, Spec: 4, Valid: true}, {Key: child, InSpec: true, Spec: 4, Valid: true}},
			deducted: 6, want: []Entry{{child, 4}, {other, 2}}, short: map[Key]int32{other: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gen := int64(2)
			got := PlanOut(tt.base, gen, tt.outs)
			if got.Deducted != tt.deducted || !reflect.DeepEqual(got.Delegated, tt.want) || !reflect.DeepEqual(got.Short, tt.short) {
				t.Errorf("PlanOut = %+v, want deducted %d, delegated %v, short %v", got, tt.deducted, tt.want, tt.short)
			}
		})
	}
}

func TestCountIn(t *testing.T) {
	got := CountIn([]In{
		{ParentPool: "b", Generation: 3, InSpec: true, Spec: 5, Published: 2}, // raise not taken out yet
		{ParentPool: "a", Generation: 7, InSpec: true, Spec: 1, Published: 4}, // cut counts at once
		{ParentPool: "c", Generation: 2, Published: 3},                        // removed: 0, acknowledged
		{ParentPool: "d", Generation: 1},                                      // names another pool
	})
	want := Counted{Licenses: 3, Acks: []InEntry{{"a", Ack{1, 7}}, {"b", Ack{2, 3}}, {"c", Ack{0, 2}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CountIn = %+v, want %+v", got, want)
	}
}
