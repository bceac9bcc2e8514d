package controller

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
)

// builderIndexer registers the operator's cache indexes on a fake client.
type builderIndexer struct{ b *fake.ClientBuilder }

func (i builderIndexer) IndexField(_ context.Context, obj ctrl.Object, field string, fn ctrl.IndexerFunc) error {
	i.b.WithIndex(obj, field, fn)
	return nil
}

// poolFixture is a pool reconciler over a fake API holding one entity
// namespace and a Queue pool of 5, counting the status writes by resource.
type poolFixture struct {
	c      ctrl.Client
	r      *LicensePoolReconciler
	clock  *clocktesting.FakeClock
	writes map[string]*atomic.Int64
	ns     *corev1.Namespace
}

const fixtureNS = "entity-acme"

func newPoolFixture(t *testing.T, nsFinalizers ...string) *poolFixture {
	t.Helper()
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "entity-acme"}, Status: v1.EntityStatus{Namespace: fixtureNS}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fixtureNS, Labels: map[string]string{v1.EntityLabel: e.Name},
		Finalizers:      nsFinalizers,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Entity", Name: e.Name, UID: e.UID, Controller: ptr.To(true)}}}}
	pool := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: fixtureNS, Name: v1.DefaultLicensePool, Generation: 1},
		Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](5), Enforcement: v1.EnforcementQueue}}
	f := &poolFixture{writes: map[string]*atomic.Int64{"platformusers": {}, "licensepools": {}}, ns: ns}
	b := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(e, ns, pool).
		WithStatusSubresource(&v1.PlatformUser{}, &v1.LicensePool{}, &v1.LicenseRequest{}).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c ctrl.Client, sub string, o ctrl.Object,
			p ctrl.Patch, opts ...ctrl.SubResourcePatchOption) error {
			switch o.(type) {
			case *v1.PlatformUser:
				f.writes["platformusers"].Add(1)
			case *v1.LicensePool:
				f.writes["licensepools"].Add(1)
			}
			return c.SubResource(sub).Patch(ctx, o, p, opts...)
		}})
	if err := index.Setup(context.Background(), builderIndexer{b}); err != nil {
		t.Fatal(err)
	}
	f.c = b.Build()
	f.clock = clocktesting.NewFakeClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	f.r = &LicensePoolReconciler{Client: f.c, Recorder: events.NewFakeRecorder(100), Clock: f.clock,
		ReservationTTL: 30 * time.Second, expectations: newWriteExpectations()}
	return f
}

func (f *poolFixture) addUser(t *testing.T, name string) {
	t.Helper()
	u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: fixtureNS, Name: name, Generation: 1,
		CreationTimestamp: metav1.NewTime(f.clock.Now())},
		Spec: v1.PlatformUserSpec{Email: name + "@acme.example", GivenName: "G", FamilyName: "F", Active: ptr.To(true)}}
	if err := f.c.Create(context.Background(), u); err != nil {
		t.Fatal(err)
	}
}

func (f *poolFixture) pass(t *testing.T) {
	t.Helper()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: fixtureNS, Name: v1.DefaultLicensePool}}
	if _, err := f.r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func (f *poolFixture) pool(t *testing.T) *v1.LicensePool {
	t.Helper()
	p := &v1.LicensePool{}
	if err := f.c.Get(context.Background(), types.NamespacedName{Namespace: fixtureNS, Name: v1.DefaultLicensePool}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A pass that licenses a user writes the pool's counts in the same pass,
// however recently the pool was written: the pool never lags its users by
// more than the pass that wrote them. (Deferring that write to the counts
// interval is what left a full pool reading "used 0" after a burst.)
func TestPoolCountsFollowTheirUsersInTheSamePass(t *testing.T) {
	f := newPoolFixture(t)
	f.addUser(t, "ada")
	f.pass(t)
	if got := f.pool(t).Status.Used; got != 1 {
		t.Fatalf("after the first pass: used %d, want 1", got)
	}
	f.clock.Step(100 * time.Millisecond) // well within countsWriteInterval
	f.addUser(t, "bob")
	f.pass(t)
	if got := f.pool(t).Status.Used; got != 2 {
		t.Fatalf("a pass that licensed bob 100ms after the last pool write left the pool at used %d, want 2", got)
	}
	users, pools := f.writes["platformusers"].Load(), f.writes["licensepools"].Load()
	f.clock.Step(time.Second)
	f.pass(t)
	if f.writes["platformusers"].Load() != users || f.writes["licensepools"].Load() != pools {
		t.Errorf("a pass with nothing new wrote: users %d → %d, pools %d → %d",
			users, f.writes["platformusers"].Load(), pools, f.writes["licensepools"].Load())
	}
}

// In a namespace being deleted the pool controller writes no status: every
// pool, request and user there is going away. Before, each pool's deletion
// rewrote all its users ("license pool does not exist"), one write per user.
func TestPoolPassWritesNothingInANamespaceBeingDeleted(t *testing.T) {
	f := newPoolFixture(t, "kubernetes")
	f.addUser(t, "ada")
	f.pass(t)
	ctx := context.Background()
	if err := f.c.Delete(ctx, f.ns); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Delete(ctx, f.pool(t)); err != nil {
		t.Fatal(err)
	}
	users := f.writes["platformusers"].Load()
	f.pass(t)
	if got := f.writes["platformusers"].Load(); got != users {
		t.Errorf("the pool's deletion in a namespace being deleted wrote %d user statuses, want none", got-users)
	}
}
