package webhook

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
)

// fakeIndexer registers the operator's cache indexes on a fake client builder.
type fakeIndexer struct{ b *fake.ClientBuilder }

func (f fakeIndexer) IndexField(_ context.Context, obj client.Object, field string, extract client.IndexerFunc) error {
	f.b.WithIndex(obj, field, extract)
	return nil
}

// poolWrites counts the writes of pool statuses a fake API server receives.
// Each write takes a little time, as a real one does, so that admissions
// arriving meanwhile queue up.
type poolWrites struct{ n atomic.Int64 }

func newFakeAPI(t *testing.T, w *poolWrites, objs ...client.Object) client.Client {
	t.Helper()
	s := kruntime.NewScheme()
	utilruntime.Must(v1.AddToScheme(s))
	utilruntime.Must(corev1.AddToScheme(s))
	b := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithStatusSubresource(&v1.LicensePool{}, &v1.PlatformUser{})
	if err := index.Setup(context.Background(), fakeIndexer{b}); err != nil {
		t.Fatal(err)
	}
	b.WithInterceptorFuncs(interceptor.Funcs{
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if _, ok := obj.(*v1.LicensePool); ok {
				w.n.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	})
	return b.Build()
}

func denyPool(ns, name string, licenses int32) *v1.LicensePool {
	return &v1.LicensePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1.LicensePoolSpec{Licenses: ptr.To(licenses), Enforcement: v1.EnforcementDeny},
	}
}

func testReserver(c client.Client) *licenseReserver {
	return newLicenseReserver(c, c, Options{ReservationTTL: 30 * time.Second, Clock: clock.RealClock{}})
}

// activate runs n concurrent admissions of distinct users into pool, spread
// over the given replicas (webhook servers sharing one API server), and
// returns how many were admitted. Every dryEvery-th request is a dry run.
func activate(t *testing.T, replicas []*licenseReserver, ns, pool string, n, dryEvery int) (admitted, dryAdmitted int) {
	t.Helper()
	var wg sync.WaitGroup
	var ok, dryOK atomic.Int64
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("u-%04d", i)},
				Spec: v1.PlatformUserSpec{LicensePool: pool}}
			dry := dryEvery > 0 && i%dryEvery == 0
			<-start
			refusal, err := replicas[i%len(replicas)].reserve(context.Background(), u, 1, "e", dry)
			if err != nil {
				t.Errorf("reserve %s: %v", u.Name, err)
				return
			}
			if refusal == nil {
				if dry {
					dryOK.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(ok.Load()), int(dryOK.Load())
}

// TestReservationsCommitInGroups: 200 concurrent admissions into one Deny pool
// of 50 admit exactly 50 and write the pool far fewer than 200 times; dry runs
// are decided with the others and charge nothing; nothing is left queued.
func TestReservationsCommitInGroups(t *testing.T) {
	w := &poolWrites{}
	c := newFakeAPI(t, w, denyPool("ns", "p", 50))
	r := testReserver(c)
	admitted, dry := activate(t, []*licenseReserver{r}, "ns", "p", 200, 10)
	if admitted != 50 {
		t.Errorf("admitted %d of 200 into a pool of 50; want exactly 50", admitted)
	}
	if dry == 0 {
		t.Errorf("no dry run was admitted; the first requests of the burst find free licenses")
	}
	pool := &v1.LicensePool{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "p"}, pool); err != nil {
		t.Fatal(err)
	}
	if len(pool.Status.Reservations) != 50 {
		t.Errorf("pool holds %d reservations; want 50 (dry runs charge nothing)", len(pool.Status.Reservations))
	}
	t.Logf("200 concurrent admissions: %d pool writes", w.n.Load())
	if got := w.n.Load(); got > 20 {
		t.Errorf("200 concurrent admissions wrote the pool %d times; want a few group commits (at most 20)", got)
	}
	if len(r.queues) != 0 {
		t.Errorf("%d pool queues left after the burst; want none", len(r.queues))
	}
}

// TestReservationsAcrossReplicas: two webhook replicas sharing the API server
// admit exactly k of N: their groups meet at the pool's resourceVersion.
func TestReservationsAcrossReplicas(t *testing.T) {
	for round := range 3 {
		w := &poolWrites{}
		c := newFakeAPI(t, w, denyPool("ns", "p", 37))
		replicas := []*licenseReserver{testReserver(c), testReserver(c)}
		if admitted, _ := activate(t, replicas, "ns", "p", 150, 0); admitted != 37 {
			t.Errorf("round %d: two replicas admitted %d of 150 into a pool of 37; want exactly 37", round, admitted)
		}
	}
}

// TestReservationsCountRecordedUsers: users the controller counted in the
// pool's status, and whose reservations it dropped, still take licenses even
// when this replica's cache does not show them.
func TestReservationsCountRecordedUsers(t *testing.T) {
	pool := denyPool("ns", "p", 10)
	pool.Status.Used = 8
	pool.Status.Reservations = []v1.LicenseReservation{{User: "other", ReservedAt: metav1.Now(), Generation: 1}}
	objs := []client.Object{pool}
	var counted []string
	for i := range 8 {
		u := licensedUser("ns", fmt.Sprintf("counted-%d", i), "p")
		objs, counted = append(objs, u), append(counted, u.Name)
	}
	w := &poolWrites{}
	api := newFakeAPI(t, w, objs...)
	r := newLicenseReserver(hidingUsers(api, counted...), api, Options{ReservationTTL: 30 * time.Second, Clock: clock.RealClock{}})
	admitted, _ := activate(t, []*licenseReserver{r}, "ns", "p", 5, 0)
	if admitted != 1 {
		t.Errorf("admitted %d into a pool of 10 with 8 counted and 1 reserved; want 1", admitted)
	}
}

// licensedUser is an active user of pool holding one of its licenses.
func licensedUser(ns, name, pool string) *v1.PlatformUser {
	u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1},
		Spec:   v1.PlatformUserSpec{LicensePool: pool, Active: ptr.To(true)},
		Status: v1.PlatformUserStatus{LicensePool: pool}}
	u.Status.Conditions = []metav1.Condition{{
		Type: v1.LicensedCondition, Status: metav1.ConditionTrue, Reason: v1.ReasonLicensed, LastTransitionTime: metav1.Now()}}
	return u
}

// hidingUsers is a cache that lags api: its lists of users leave out the
// named ones, as a cache that has not received them yet does.
func hidingUsers(api client.Client, names ...string) client.Client {
	hidden := map[string]bool{}
	for _, n := range names {
		hidden[n] = true
	}
	return interceptor.NewClient(api.(client.WithWatch), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if err := c.List(ctx, list, opts...); err != nil {
				return err
			}
			if users, ok := list.(*v1.PlatformUserList); ok {
				var kept []v1.PlatformUser
				for _, u := range users.Items {
					if !hidden[u.Name] {
						kept = append(kept, u)
					}
				}
				users.Items = kept
			}
			return nil
		},
	})
}

// TestReservationListBounded: a pool whose reservation list is full admits
// nobody more until the controller counts the reserved users, so the list
// stays well under etcd's object size at any number of users.
func TestReservationListBounded(t *testing.T) {
	pool := denyPool("ns", "p", 100000)
	now := metav1.Now()
	for i := range maxReservations {
		pool.Status.Reservations = append(pool.Status.Reservations, v1.LicenseReservation{User: fmt.Sprintf("r-%05d", i), ReservedAt: now, Generation: 1})
	}
	w := &poolWrites{}
	c := newFakeAPI(t, w, pool)
	r := newLicenseReserver(c, c, Options{ReservationTTL: 30 * time.Second, Clock: clock.RealClock{}})
	u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "late"}, Spec: v1.PlatformUserSpec{LicensePool: "p"}}
	done := make(chan error, 1)
	go func() {
		refusal, err := r.reserve(context.Background(), u, 1, "e", false)
		if refusal != nil {
			err = fmt.Errorf("refused: %v", refusal)
		}
		done <- err
	}()
	// The controller counts the reserved users and drops their reservations.
	time.Sleep(200 * time.Millisecond)
	if w.n.Load() != 0 {
		t.Fatalf("a full reservation list was written %d times", w.n.Load())
	}
	got := &v1.LicensePool{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(pool), got); err != nil {
		t.Fatal(err)
	}
	got.Status.Used = maxReservations
	got.Status.Reservations = nil
	if err := c.Status().Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting admission: %v; want admitted once the list drained", err)
	}
	if len(r.queues) != 0 {
		t.Errorf("%d pool queues left; want none", len(r.queues))
	}
}

// TestInventedPoolNamesLeaveNothing: 100,000 admissions naming pools that do
// not exist are refused and leave no per-pool state behind; the heap after
// them is what it was before (logged).
func TestInventedPoolNamesLeaveNothing(t *testing.T) {
	w := &poolWrites{}
	c := newFakeAPI(t, w)
	r := testReserver(c)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const n = 100000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var refused atomic.Int64
	before := heap()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "u"},
				Spec: v1.PlatformUserSpec{LicensePool: fmt.Sprintf("invented-%08x", i)}}
			if refusal, err := r.reserve(context.Background(), u, 1, "e", false); err == nil && refusal != nil {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	after := heap()
	t.Logf("%d admissions naming invented pools: heap %d KiB before, %d KiB after", n, before/1024, after/1024)
	if refused.Load() != n {
		t.Errorf("%d of %d refused; want all", refused.Load(), n)
	}
	if len(r.queues) != 0 {
		t.Errorf("%d pool queues left after %d invented pool names; want none", len(r.queues), n)
	}
}

// TestDeactivatedHolderFreesItsLicenseAtOnce: a holder deactivated a moment
// ago, that the controller has not released yet, still counts in the pool's
// record; admission gives its license to the next user at once.
func TestDeactivatedHolderFreesItsLicenseAtOnce(t *testing.T) {
	pool := denyPool("ns", "p", 1)
	pool.Status.Used = 1
	first := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "first"},
		Spec:   v1.PlatformUserSpec{LicensePool: "p", Active: ptr.To(false)},
		Status: v1.PlatformUserStatus{LicensePool: "p"}}
	first.Status.Conditions = []metav1.Condition{{
		Type: v1.LicensedCondition, Status: metav1.ConditionTrue, Reason: v1.ReasonLicensed, LastTransitionTime: metav1.Now()}}
	w := &poolWrites{}
	c := newFakeAPI(t, w, pool, first)
	if admitted, _ := activate(t, []*licenseReserver{testReserver(c)}, "ns", "p", 3, 0); admitted != 1 {
		t.Errorf("admitted %d into a pool of 1 whose only holder was deactivated; want 1", admitted)
	}

	// Still active: the pool is full.
	pool2 := denyPool("ns", "q", 1)
	pool2.Status.Used = 1
	holder := first.DeepCopy()
	holder.Name, holder.Spec.LicensePool, holder.Spec.Active, holder.Status.LicensePool = "holder", "q", ptr.To(true), "q"
	c = newFakeAPI(t, w, pool2, holder)
	if admitted, _ := activate(t, []*licenseReserver{testReserver(c)}, "ns", "q", 3, 0); admitted != 0 {
		t.Errorf("admitted %d into a full pool of 1; want 0", admitted)
	}
}

// TestReservedUserArrivingMidRoundStillCounts: a user whose reservation the
// pool holds, and that reaches this replica's cache between the round's list
// of the pool's users and its look-up of that user, still holds its license.
// The look-up sees it in this pool; it has not moved away.
func TestReservedUserArrivingMidRoundStillCounts(t *testing.T) {
	pool := denyPool("ns", "p", 1)
	pool.Status.Reservations = []v1.LicenseReservation{{User: "arriving", ReservedAt: metav1.Now(), Generation: 1}}
	arriving := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "arriving", Generation: 1},
		Spec: v1.PlatformUserSpec{LicensePool: "p"}}
	w := &poolWrites{}
	api := newFakeAPI(t, w, pool, arriving)
	// The cache's list of the pool's users was taken a moment before the
	// user arrived; a read by name, a moment later, shows it.
	cache := hidingUsers(api, "arriving")
	r := newLicenseReserver(cache, api, Options{ReservationTTL: 30 * time.Second, Clock: clock.RealClock{}})
	next := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "next"}, Spec: v1.PlatformUserSpec{LicensePool: "p"}}
	refusal, err := r.reserve(context.Background(), next, 1, "e", false)
	if err != nil {
		t.Fatal(err)
	}
	if refusal == nil {
		t.Errorf("admitted into a pool of 1 whose only license is reserved for a user just arrived; want refused")
	}
}

// countingReader counts the pools read and the user lists made on the API
// server.
type countingReader struct {
	client.Reader
	pools, lists int
}

func (c *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*v1.PlatformUserList); ok {
		c.lists++
	}
	return c.Reader.List(ctx, list, opts...)
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*v1.LicensePool); ok {
		c.pools++
	}
	return c.Reader.Get(ctx, key, obj, opts...)
}

// A round starts from the pool the previous round wrote, without reading it
// again; when the pool changed since (a Conflict), or when the round would
// write nothing (a refusal or a dry run stands on no write), it is decided
// again on a fresh read.
func TestReservationRoundsStartFromTheirOwnWrite(t *testing.T) {
	w := &poolWrites{}
	c := newFakeAPI(t, w, denyPool("ns", "p", 3))
	reader := &countingReader{Reader: c}
	r := newLicenseReserver(c, reader, Options{ReservationTTL: 30 * time.Second, Clock: clock.RealClock{}})
	key := types.NamespacedName{Namespace: "ns", Name: "p"}
	q := &reservationQueue{}
	round := func(user string, dry bool) *field.Error {
		t.Helper()
		answers, deferred, err := r.tryRound(context.Background(), key, q, []*reservationRequest{{user: user, generation: 1, entity: "e", dryRun: dry}})
		if err != nil || len(deferred) > 0 {
			t.Fatalf("round for %s: err %v, deferred %d", user, err, len(deferred))
		}
		return answers[0].refusal
	}

	if round("u1", false) != nil || round("u2", false) != nil {
		t.Fatal("u1 and u2 refused from a pool of 3")
	}
	if reader.pools != 1 || w.n.Load() != 2 {
		t.Errorf("two charging rounds: %d reads, %d writes; want 1 read (the second starts from the first's write), 2 writes", reader.pools, w.n.Load())
	}

	// A dry run charges nothing, so it is decided on a read.
	if round("dry", true) != nil {
		t.Error("a dry run refused with a license free")
	}
	if reader.pools != 2 {
		t.Errorf("a dry run after a write: %d reads in all; want 2", reader.pools)
	}

	// The controller counts two more users meanwhile: the round charging u3
	// on the copy it wrote is refused by the API server, and decided again
	// on a read, which shows the pool full.
	if round("u3", false) != nil { // leaves q.written set
		t.Fatal("u3 refused from a pool with a license free")
	}
	pool := &v1.LicensePool{}
	if err := c.Get(context.Background(), key, pool); err != nil {
		t.Fatal(err)
	}
	pool.Status.Used, pool.Status.Reservations = 3, nil
	if err := c.Status().Update(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"u1", "u2", "u3"} {
		if err := c.Create(context.Background(), licensedUser("ns", name, "p")); err != nil {
			t.Fatal(err)
		}
	}
	readsBefore := reader.pools
	if refusal := round("u4", false); refusal == nil || !strings.Contains(refusal.Detail, "is full: 3/3") {
		t.Errorf("u4 after the pool filled up: refusal %v; want the pool full, decided on a fresh read", refusal)
	}
	if reader.pools != readsBefore+1 {
		t.Errorf("the stale round made %d reads; want 1", reader.pools-readsBefore)
	}
	if q.written != nil {
		t.Error("a round that wrote nothing left a copy to start from")
	}
}

// TestDeactivationTheCacheHasNotSeenFreesItsLicense: a client deactivates
// the only holder of a Deny pool and at once activates another user. This
// replica's cache still shows the holder active, and the pool's record still
// counts it, whether or not the controller has released the holder's status
// yet; the refusal is checked against the API server, which shows the license
// free, and the user is admitted. While the holder is really active, the same
// check refuses, at the cost of one list of the namespace.
func TestDeactivationTheCacheHasNotSeenFreesItsLicense(t *testing.T) {
	for _, released := range []bool{false, true} {
		t.Run(fmt.Sprintf("released=%v", released), func(t *testing.T) {
			pool := denyPool("ns", "p", 1)
			pool.Status.Used = 1
			holder := licensedUser("ns", "holder", "p")
			api := newFakeAPI(t, &poolWrites{}, pool, holder.DeepCopy())
			// The cache answers with the holder as it was before the deactivation.
			stale := holder.DeepCopy()
			cache := interceptor.NewClient(api.(client.WithWatch), interceptor.Funcs{
				List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
					if err := c.List(ctx, list, opts...); err != nil {
						return err
					}
					if users, ok := list.(*v1.PlatformUserList); ok {
						for i := range users.Items {
							if users.Items[i].Name == stale.Name {
								stale.DeepCopyInto(&users.Items[i])
							}
						}
					}
					return nil
				},
			})
			live := &countingReader{Reader: api}
			r := newLicenseReserver(cache, live, Options{ReservationTTL: 30 * time.Second, Clock: clock.RealClock{}})
			next := func(name string) *field.Error {
				t.Helper()
				u := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: v1.PlatformUserSpec{LicensePool: "p"}}
				refusal, err := r.reserve(context.Background(), u, 1, "e", false)
				if err != nil {
					t.Fatal(err)
				}
				return refusal
			}

			if refusal := next("early"); refusal == nil || !strings.Contains(refusal.Detail, "is full: 1/1") {
				t.Fatalf("admitted into a pool of 1 whose holder is active; want refused as full, got %v", refusal)
			}
			if live.lists != 1 {
				t.Errorf("the refusal listed users from the API server %d times; want 1", live.lists)
			}

			onServer := &v1.PlatformUser{}
			if err := api.Get(context.Background(), client.ObjectKeyFromObject(holder), onServer); err != nil {
				t.Fatal(err)
			}
			onServer.Spec.Active = ptr.To(false)
			if err := api.Update(context.Background(), onServer); err != nil {
				t.Fatal(err)
			}
			if released {
				// The controller wrote the holder's status and has not
				// written the pool's counts yet.
				onServer.Status = v1.PlatformUserStatus{}
				if err := api.Status().Update(context.Background(), onServer); err != nil {
					t.Fatal(err)
				}
			}
			if refusal := next("sleeper"); refusal != nil {
				t.Errorf("refused although the API server shows the only holder deactivated: %s", refusal.Detail)
			}
		})
	}
}
