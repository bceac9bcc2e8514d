package webhook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// entityWithNamespace is an Entity and the namespace it owns.
func entityWithNamespace(name, parent string) []client.Object {
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}, Spec: v1.EntitySpec{Parent: parent}}
	e.Status.Namespace = "entity-" + name
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.Status.Namespace, Labels: map[string]string{v1.EntityLabel: name},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Entity", Name: name, UID: e.UID, Controller: ptr.To(true)}}}}
	return []client.Object{e, ns}
}

// parentWithChild is entity x, whose Deny pool of capacity licenses has
// licensed users, and its sub-entity y with a pool.
func parentWithChild(capacity int32, licensed int) []client.Object {
	objs := append(entityWithNamespace("x", ""), entityWithNamespace("y", "x")...)
	pool := denyPool("entity-x", "default", capacity)
	pool.Generation = 1
	pool.Status.Used = int32(licensed)
	objs = append(objs, pool, denyPool("entity-y", "default", 0))
	for i := range licensed {
		objs = append(objs, licensedUser("entity-x", fmt.Sprintf("held-%d", i), "default"))
	}
	return objs
}

// raise asks r to admit pool's delegation to y going from the licenses it has
// to licenses.
func raise(r *licenseReserver, c client.Client, licenses int32, dryRun bool) (string, error) {
	old := &v1.LicensePool{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "entity-x", Name: "default"}, old); err != nil {
		return "", err
	}
	p := old.DeepCopy()
	p.Spec.Delegations = []v1.LicenseDelegation{{Entity: "y", Licenses: licenses}}
	fe, err := r.reserveRaise(context.Background(), old, p, "x", dryRun)
	if fe != nil {
		return fe.Field + ": " + fe.Detail, err
	}
	return "", err
}

func parentPool(t *testing.T, c client.Client) *v1.LicensePool {
	t.Helper()
	p := &v1.LicensePool{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "entity-x", Name: "default"}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRaiseBeyondAvailableIsRefused: a Deny pool of 10 with 7 licensed users
// refuses to delegate 5, with the documented message on the field, and
// reserves nothing; 3 fit, are reserved, and then count against the next
// activation although spec.delegations does not show them yet.
func TestRaiseBeyondAvailableIsRefused(t *testing.T) {
	c := newFakeAPI(t, &poolWrites{}, parentWithChild(10, 7)...)
	r := testReserver(c)
	got, err := raise(r, c, 5, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `spec.delegations[0].licenses: license pool "default" of entity "x" has 3 available licenses; cannot delegate 5 more to "y"`
	if got != want {
		t.Errorf("raise of 5 with 3 available:\n got %q\nwant %q", got, want)
	}
	if n := len(parentPool(t, c).Status.DelegationReservations); n != 0 {
		t.Errorf("a refused raise left %d reservations", n)
	}

	if got, err := raise(r, c, 3, true); err != nil || got != "" {
		t.Errorf("dry run of a raise that fits: %q, %v", got, err)
	}
	if n := len(parentPool(t, c).Status.DelegationReservations); n != 0 {
		t.Errorf("a dry run left %d reservations", n)
	}

	if got, err := raise(r, c, 3, false); err != nil || got != "" {
		t.Fatalf("raise of 3 with 3 available: %q, %v", got, err)
	}
	res := parentPool(t, c).Status.DelegationReservations
	if len(res) != 1 || res[0].Entity != "y" || res[0].LicensePool != "default" || res[0].Licenses != 3 {
		t.Errorf("reservations after the raise: %+v; want 3 for y/default", res)
	}
	u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "entity-x", Name: "late"}, Spec: v1.PlatformUserSpec{Active: ptr.To(true)}}
	fe, err := r.reserve(context.Background(), u, 1, "x", false)
	if err != nil {
		t.Fatal(err)
	}
	if fe == nil || !strings.Contains(fe.Detail, "is full: 7/7 licenses used") {
		t.Errorf("activation after a reserved raise filled the pool: %v; want refused, full", fe)
	}
}

// TestRaiseAndActivationsRace: activations and a raise race for the last
// licenses of a parent pool, from two replicas: what they were promised
// together never exceeds what the pool has.
func TestRaiseAndActivationsRace(t *testing.T) {
	for round := range 5 {
		c := newFakeAPI(t, &poolWrites{}, parentWithChild(10, 4)...)
		replicas := []*licenseReserver{testReserver(c), testReserver(c)}
		var wg sync.WaitGroup
		var users atomic.Int32
		var delegated int32
		start := make(chan struct{})
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "entity-x", Name: fmt.Sprintf("new-%d", i)},
					Spec: v1.PlatformUserSpec{Active: ptr.To(true)}}
				<-start
				fe, err := replicas[i%2].reserve(context.Background(), u, 1, "x", false)
				if err != nil {
					t.Error(err)
				} else if fe == nil {
					users.Add(1)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := raise(replicas[round%2], c, 4, false)
			if err != nil {
				t.Error(err)
			} else if got == "" {
				delegated = 4
			}
		}()
		close(start)
		wg.Wait()
		if total := 4 + users.Load() + delegated; total > 10 {
			t.Errorf("round %d: 4 held + %d activated + %d delegated = %d > 10", round, users.Load(), delegated, total)
		}
		if users.Load()+delegated < 6 {
			t.Errorf("round %d: %d activated and %d delegated: a free license was refused", round, users.Load(), delegated)
		}
		t.Logf("round %d: %d activated, %d delegated", round, users.Load(), delegated)
	}
}
