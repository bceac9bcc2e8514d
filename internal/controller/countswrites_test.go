package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "visio.dev/operator/api/v1alpha1"
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

func TestCountsOnly(t *testing.T) {
	ready := func(msg string) v1.EntityStatus {
		return v1.EntityStatus{
			StatusBase: v1.StatusBase{ObservedGeneration: 1, Conditions: []metav1.Condition{{
				Type: v1.ReadyCondition, Status: metav1.ConditionTrue, Reason: v1.ReasonReconciled, Message: msg, ObservedGeneration: 1,
			}}},
			Namespace: "ent-a",
		}
	}
	base := ready("1/10 licenses used")
	counts := ready("2/10 licenses used")
	counts.Licenses.Used, counts.Users.Total, counts.VMRs.Ready = 2, 7, 1

	generation := counts
	generation.ObservedGeneration = 2
	stalled := ready("x")
	stalled.Conditions = []metav1.Condition{{Type: v1.ReadyCondition, Status: metav1.ConditionFalse, Reason: v1.ReasonNamespaceConflict}}
	namespace := counts
	namespace.Namespace = ""

	for name, tc := range map[string]struct {
		next v1.EntityStatus
		want bool
	}{
		"counts and the message quoting them": {counts, true},
		"a new observed generation":           {generation, false},
		"a condition changing":                {stalled, false},
		"the namespace changing":              {namespace, false},
	} {
		if got := countsOnly(&base, &tc.next); got != tc.want {
			t.Errorf("%s: countsOnly = %v, want %v", name, got, tc.want)
		}
	}
}
