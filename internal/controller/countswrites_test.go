package controller

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestCountsWritesWaitsOnlyForABusyObject(t *testing.T) {
	var w countsWrites
	a, b := types.NamespacedName{Name: "a"}, types.NamespacedName{Name: "b"}
	t0 := time.Unix(1000, 0)
	if d := w.wait(a, t0); d != 0 {
		t.Fatalf("never written: wait %v, want 0", d)
	}
	w.wrote(a, t0)
	if d := w.wait(a, t0.Add(100*time.Millisecond)); d != countsWriteInterval-100*time.Millisecond {
		t.Errorf("100ms after a write: wait %v, want %v", d, countsWriteInterval-100*time.Millisecond)
	}
	if d := w.wait(b, t0.Add(100*time.Millisecond)); d != 0 {
		t.Errorf("another object: wait %v, want 0", d)
	}
	if d := w.wait(a, t0.Add(countsWriteInterval)); d != 0 {
		t.Errorf("one interval after a write: wait %v, want 0", d)
	}
	// A write long after forgets the objects written before it.
	w.wrote(b, t0.Add(10*countsWriteInterval))
	if _, kept := w.last[a]; kept || len(w.last) != 1 {
		t.Errorf("after an idle interval the map holds %v, want only b", w.last)
	}
}
