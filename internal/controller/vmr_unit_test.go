package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/embedded"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/pins"
)

func never(string) (bool, error) { return false, nil }

func noClaims() (map[string]bool, error) { return map[string]bool{}, nil }

func TestNumericIDPickStaysInRangeUntilExhausted(t *testing.T) {
	p := newNumberPool()
	now := time.Now()
	seen := map[string]bool{}
	for i := range 10 {
		n, err := p.pick(1000, 1009, types.UID(fmt.Sprint("uid-", i)), now, never, noClaims)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		v, _ := strconv.Atoi(n)
		if v < 1000 || v > 1009 || seen[n] {
			t.Fatalf("pick %d = %s: out of range or repeated (%v)", i, n, seen)
		}
		seen[n] = true
	}
	if _, err := p.pick(1000, 1009, "uid-late", now, never, noClaims); !errors.Is(err, errNumbersExhausted) {
		t.Fatalf("pick in a full range = %v; want errNumbersExhausted", err)
	}
}

func TestNumericIDPickSkipsTakenNumbers(t *testing.T) {
	taken := map[string]bool{}
	for n := 100000; n < 100090; n++ {
		taken[strconv.Itoa(n)] = true
	}
	lookups := 0
	isTaken := func(s string) (bool, error) { lookups++; return taken[s], nil }
	claimedCalls := 0
	claimed := func() (map[string]bool, error) { claimedCalls++; return taken, nil }
	p := newNumberPool()
	for i := range 20 {
		n, err := p.pick(100000, 100099, types.UID(fmt.Sprint("uid-", i)), time.Now(), isTaken, claimed)
		if i < 10 {
			if err != nil || taken[n] {
				t.Fatalf("pick %d = %q, %v; want a free number", i, n, err)
			}
			taken[n] = true // as the cache would show once the status is written
			continue
		}
		if !errors.Is(err, errNumbersExhausted) {
			t.Fatalf("pick %d = %q, %v; want errNumbersExhausted", i, n, err)
		}
	}
	if lookups > 20*numberProbeLimit {
		t.Errorf("%d index lookups for 20 picks; want at most %d each", lookups, numberProbeLimit)
	}
	if claimedCalls == 0 {
		t.Errorf("a nearly full range never fell back to one scan of the claimed values")
	}
}

func TestNumericIDPickIsStablePerRoomAndSpreadsRooms(t *testing.T) {
	p := newNumberPool()
	now := time.Now()
	a1, _ := p.pick(100000, 999999, "room-a", now, never, noClaims)
	a2, _ := p.pick(100000, 999999, "room-a", now.Add(time.Second), never, noClaims)
	if a1 != a2 {
		t.Fatalf("same room got %s then %s; a retried pass must get its number back", a1, a2)
	}
	// A fresh process starts from the same point for the same room.
	b1, _ := newNumberPool().pick(100000, 999999, "room-b", now, never, noClaims)
	b2, _ := newNumberPool().pick(100000, 999999, "room-b", now, never, noClaims)
	if b1 != b2 {
		t.Fatalf("room-b got %s and %s from two pools; want a deterministic start", b1, b2)
	}
	// Rooms do not all start at the bottom of the range.
	low := 0
	for i := range 50 {
		n, _ := newNumberPool().pick(100000, 999999, types.UID(fmt.Sprint("spread-", i)), now, never, noClaims)
		if n == "100000" {
			low++
		}
	}
	if low > 1 {
		t.Errorf("%d of 50 rooms started at the lowest number", low)
	}
}

func TestNumericIDHoldExpires(t *testing.T) {
	p := newNumberPool()
	now := time.Now()
	a, _ := p.pick(1000, 1000, "room-a", now, never, noClaims)
	if _, err := p.pick(1000, 1000, "room-b", now.Add(time.Second), never, noClaims); !errors.Is(err, errNumbersExhausted) {
		t.Fatalf("number held for room-a was handed to room-b: %v", err)
	}
	b, err := p.pick(1000, 1000, "room-b", now.Add(numberHoldWindow+time.Second), never, noClaims)
	if err != nil || b != a {
		t.Fatalf("after the hold expired pick = %q, %v; want %s", b, err, a)
	}
	p.release("room-b")
	if len(p.held) != 0 {
		t.Fatalf("release left %v", p.held)
	}
}

func TestNumericIDConcurrentPicksAreDistinct(t *testing.T) {
	p := newNumberPool()
	const rooms = 500
	now := time.Now()
	got := make([]string, rooms)
	var wg sync.WaitGroup
	for i := range rooms {
		wg.Go(func() {
			// The cache shows none of the concurrent choices.
			n, err := p.pick(100000, 100999, types.UID(fmt.Sprint("uid-", i)), now, never, noClaims)
			if err != nil {
				t.Errorf("pick: %v", err)
			}
			got[i] = n
		})
	}
	wg.Wait()
	slices.Sort(got)
	if d := slices.Compact(slices.Clone(got)); len(d) != rooms {
		t.Fatalf("%d distinct numbers for %d concurrent picks", len(d), rooms)
	}
}

func TestVMRNumericIDFromCache(t *testing.T) {
	me := testVMR("me", "ns1", "uid-me", func(v *v1.VMR) { v.Spec.Aliases = []string{"1003"} })
	c := newFakeClient(t,
		testVMR("a", "ns1", "uid-a", func(v *v1.VMR) { v.Status.NumericID = "1000" }),
		testVMR("b", "ns2", "uid-b", func(v *v1.VMR) { v.Spec.NumericID = "1001" }),
		testVMR("c", "ns2", "uid-c", func(v *v1.VMR) { v.Spec.Aliases = []string{"1002"} }),
		me,
	)
	r := newTestReconciler(c, embedded.New())
	r.NumericIDMin, r.NumericIDMax = 1000, 1004
	if err := r.setup(); err != nil {
		t.Fatal(err)
	}
	got, b, err := r.numericID(context.Background(), me)
	if err != nil || b != nil || got != "1004" {
		t.Fatalf("numericID = %q, %v, %v; want 1004, the only number nobody claims", got, b, err)
	}
	other := testVMR("other", "ns1", "uid-other", nil)
	if _, b, err := r.numericID(context.Background(), other); err != nil || b == nil || b.reason != reasonNumericIDsExhausted {
		t.Fatalf("numericID in a full range = %+v, %v; want a block", b, err)
	}
	given := testVMR("given", "ns1", "uid-given", func(v *v1.VMR) { v.Spec.NumericID = "555555" })
	if got, _, _ := r.numericID(context.Background(), given); got != "555555" {
		t.Fatalf("numericID with spec.numericId = %q", got)
	}
}

func TestVMRConflictOrdering(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Second))
	a := testVMR("a", "ns", "uid-a", func(v *v1.VMR) { v.CreationTimestamp = t1 })
	b := testVMR("b", "ns", "uid-b", func(v *v1.VMR) { v.CreationTimestamp = t0 })
	if !createdBefore(b, a) || createdBefore(a, b) {
		t.Fatal("the VMR created first must be the earlier one")
	}
	x := testVMR("x", "ns-a", "uid-x", func(v *v1.VMR) { v.CreationTimestamp = t0 })
	y := testVMR("x", "ns-b", "uid-y", func(v *v1.VMR) { v.CreationTimestamp = t0 })
	if !createdBefore(x, y) || createdBefore(y, x) {
		t.Fatal("same creation time: namespace/name must decide")
	}
	if createdBefore(x, x) {
		t.Fatal("a VMR is not earlier than itself")
	}
}

func TestVMRDialConflictStallsTheLaterRoom(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	earlier := testVMR("first", "ns1", "uid-1", func(v *v1.VMR) {
		v.CreationTimestamp = t0
		v.Spec.Aliases = []string{"conseil@visio.example"}
		v.Status.NumericID = "123456"
	})
	later := testVMR("second", "ns2", "uid-2", func(v *v1.VMR) {
		v.CreationTimestamp = metav1.NewTime(t0.Add(time.Minute))
		v.Spec.Aliases = []string{"conseil@visio.example"}
	})
	c := newFakeClient(t, earlier, later)
	r := newTestReconciler(c, embedded.New())
	ctx := context.Background()

	b, err := r.dialConflict(ctx, later, "654321")
	if err != nil || b == nil || b.reason != v1.ReasonAliasConflict {
		t.Fatalf("dialConflict(later) = %+v, %v; want AliasConflict", b, err)
	}
	if !strings.Contains(b.message, "ns1/first") || !strings.Contains(b.message, "conseil@visio.example") {
		t.Errorf("message %q must name the other VMR and the value", b.message)
	}
	if b, err := r.dialConflict(ctx, earlier, "123456"); err != nil || b != nil {
		t.Fatalf("dialConflict(earlier) = %+v, %v; the earlier room keeps its values", b, err)
	}
	b, err = r.dialConflict(ctx, later, "123456")
	if err != nil || b == nil || !strings.Contains(b.message, `numeric id "123456"`) {
		t.Fatalf("dialConflict on the numeric id = %+v, %v", b, err)
	}
}

func TestVMRDesiredRoom(t *testing.T) {
	limit := int32(25)
	vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) {
		v.Spec.Description = "Conseil municipal"
		v.Spec.Aliases = []string{"z@visio.example", "a@visio.example"}
		v.Spec.ParticipantLimit = &limit
	})
	p := pinPair{secret: "conseil-pins", host: "482915", guest: "739164"}
	room := desiredRoom(vmr, "123456", p)
	want := backend.Room{Key: "visio-uid-1", Name: "mairie/conseil", Description: "Conseil municipal", NumericID: "123456",
		Aliases: []string{"a@visio.example", "z@visio.example"}, HostPIN: "482915"}
	if room.Key != want.Key || room.Name != want.Name || room.Description != want.Description || room.NumericID != want.NumericID ||
		!slices.Equal(room.Aliases, want.Aliases) || room.HostPIN != want.HostPIN || room.GuestPIN != "" || room.AllowGuests ||
		room.ParticipantLimit == nil || *room.ParticipantLimit != 25 {
		t.Fatalf("desiredRoom = %+v", room)
	}
	limit = 30
	if *room.ParticipantLimit != 25 {
		t.Fatal("desired room shares the spec's participant limit")
	}

	vmr.Spec.AllowGuests = true
	if guests := desiredRoom(vmr, "123456", p); guests.GuestPIN != "739164" || !guests.AllowGuests {
		t.Fatalf("with guests allowed the guest PIN must be sent: %+v", guests)
	}

	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s", p, p, p, p)} {
		if strings.Contains(s, "482915") || strings.Contains(s, "739164") {
			t.Fatalf("a printed pinPair reveals a PIN: %s", s)
		}
	}

	have := room
	have.HostPIN, have.Aliases = "111222", []string{"z@visio.example", "a@visio.example"}
	diff := roomDiff(room, &have)
	if !slices.Equal(diff, []string{"hostPin"}) {
		t.Fatalf("roomDiff = %v; want only hostPin (alias order does not matter)", diff)
	}
	if fingerprintRoom(room) == fingerprintRoom(have) {
		t.Fatal("a PIN change must change the fingerprint")
	}
	if len(roomDiff(room, &room)) != 0 {
		t.Fatal("a room differs from itself")
	}
}

// TestVMRReconcileKeepsPINsSecret runs whole passes against a fake API server
// and backend, and checks that the PINs reach the backend and nothing else.
func TestVMRReconcileKeepsPINsSecret(t *testing.T) {
	vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) { v.Generation = 1 })
	c := newFakeClient(t, vmr)
	be := newFakeBackend()
	r := newTestReconciler(c, be)
	r.JoinBaseURL, r.SIPDomain = "https://visio.example/join/", "visio.example"
	rec := r.Recorder.(*events.FakeRecorder)
	var logs strings.Builder
	ctx := log.IntoContext(context.Background(), funcr.New(func(prefix, args string) {
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10}))
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}

	res, err := r.Reconcile(ctx, req)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.RequeueAfter != r.DriftCheckInterval {
		t.Errorf("RequeueAfter = %v; want the drift interval %v", res.RequeueAfter, r.DriftCheckInterval)
	}
	got := &v1.VMR{}
	if err := c.Get(ctx, req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "mairie", Name: "conseil-pins"}, secret); err != nil {
		t.Fatalf("generated Secret: %v", err)
	}
	host, guest := string(secret.Data[pins.HostPINKey]), string(secret.Data[pins.GuestPINKey])
	if host == "" || guest == "" || !metav1.IsControlledBy(secret, got) || secret.Labels[vmrLabel] != "conseil" {
		t.Fatalf("generated Secret = %+v", secret.ObjectMeta)
	}
	st := got.Status
	if !isConditionTrue(st.Conditions, v1.ReadyCondition) || !isConditionTrue(st.Conditions, v1.ProvisionedCondition) {
		t.Fatalf("conditions = %+v", st.Conditions)
	}
	if st.BackendRef != "ref-1" || st.PINSecretName != "conseil-pins" || st.NumericID == "" ||
		st.JoinURL != "https://visio.example/join/"+st.NumericID || st.SIPURI != "sip:"+st.NumericID+"@visio.example" {
		t.Fatalf("status = %+v", st)
	}
	// Create looks the key up itself: no Find of the controller's own.
	if be.creates != 1 || be.finds != 0 || be.rooms["ref-1"].HostPIN != host || be.rooms["ref-1"].Name != "mairie/conseil" {
		t.Fatalf("backend: %d finds, %d creates, rooms %v", be.finds, be.creates, be.rooms)
	}

	// Steady state: no backend call, no status write.
	rv := got.ResourceVersion
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if be.calls() != 1 || got.ResourceVersion != rv {
		t.Fatalf("second pass: %d backend calls, resourceVersion %s -> %s", be.calls(), rv, got.ResourceVersion)
	}

	// Rotating the PINs in the Secret reaches the backend without a spec change.
	secret.Data[pins.HostPINKey] = []byte("905173")
	if err := c.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if be.updates != 1 || be.rooms["ref-1"].HostPIN != "905173" {
		t.Fatalf("after PIN rotation: %d updates", be.updates)
	}

	// Drift: the room is read again once the interval has passed, and repaired.
	be.rooms["ref-1"] = backend.Room{Key: "visio-uid-1", Name: "mairie/conseil"}
	gets := be.gets
	r.clock.(*clocktesting.FakeClock).Step(r.DriftCheckInterval - time.Second)
	if _, err := r.Reconcile(ctx, req); err != nil || be.gets != gets {
		t.Fatalf("before the interval: %d gets (was %d), %v", be.gets, gets, err)
	}
	r.clock.(*clocktesting.FakeClock).Step(time.Second)
	if _, err := r.Reconcile(ctx, req); err != nil || be.gets != gets+1 || be.updates != 2 || be.rooms["ref-1"].HostPIN != "905173" {
		t.Fatalf("drift check: %d gets, %d updates, %v", be.gets, be.updates, err)
	}

	close(rec.Events)
	var evs []string
	for e := range rec.Events {
		evs = append(evs, e)
	}
	if err := c.Get(ctx, req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	everything := logs.String() + strings.Join(evs, "\n") + fmt.Sprintf("%+v", got.Status)
	for _, pin := range []string{host, guest, "905173"} {
		if strings.Contains(everything, pin) {
			t.Fatalf("a PIN appears in logs, events or status:\n%s", everything)
		}
	}
	if !slices.ContainsFunc(evs, func(e string) bool { return strings.Contains(e, "Normal Provisioned") }) {
		t.Errorf("no Provisioned event in %v", evs)
	}
}

// The pass that follows a creation often reads the VMR from a cache that
// shows the reference but not yet the Ready status of the same pass: it must
// not read the room again, since this process just left it as wanted.
func TestVMRReconcileTrustsItsOwnRecordOverALaggingCache(t *testing.T) {
	c, be, r, req := reconciledOnce(t, func(v *v1.VMR) { v.Generation = 1 })
	got := &v1.VMR{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	lagging := got.DeepCopy()
	lagging.Status.Conditions, lagging.Status.ObservedGeneration = nil, 0
	if err := c.Status().Update(context.Background(), lagging); err != nil {
		t.Fatal(err)
	}
	calls := be.calls()
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if be.calls() != calls || !isConditionTrue(got.Status.Conditions, v1.ReadyCondition) {
		t.Fatalf("%d backend calls after the creation (want none), conditions %+v", be.calls()-calls, got.Status.Conditions)
	}

	// A process that does not know the room (a restart) reads it once.
	r2 := newTestReconciler(c, be)
	if err := c.Get(context.Background(), req.NamespacedName, lagging); err != nil {
		t.Fatal(err)
	}
	lagging.Status.Conditions, lagging.Status.ObservedGeneration = nil, 0
	if err := c.Status().Update(context.Background(), lagging); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if be.gets != 1 {
		t.Fatalf("%d reads by a process that did not know the room unprovisioned; want 1", be.gets)
	}
}

func TestVMRReconcileRecordsRefOnConflict(t *testing.T) {
	vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) { v.Generation = 1 })
	c := newFakeClient(t, vmr)
	be := newFakeBackend()
	be.createErr = fmt.Errorf("%w: numeric id %q belongs to conference 7", backend.ErrConflict, "x")
	r := newTestReconciler(c, be)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	got := &v1.VMR{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	stalled := findCondition(got.Status.Conditions, v1.StalledCondition)
	if got.Status.BackendRef != "ref-1" || stalled == nil || stalled.Reason != v1.ReasonBackendConflict ||
		!strings.Contains(stalled.Message, "belongs to conference 7") {
		t.Fatalf("status = %+v", got.Status)
	}
}

func TestVMRReconcileAdoptsRoomFoundByKey(t *testing.T) {
	vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) { v.Generation = 1 })
	c := newFakeClient(t, vmr)
	be := newFakeBackend()
	// A previous pass created the room and crashed before recording it.
	be.rooms["ref-9"] = backend.Room{Key: "visio-uid-1", Name: "mairie/conseil"}
	r := newTestReconciler(c, be)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	got := &v1.VMR{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.BackendRef != "ref-9" || be.creates != 1 || len(be.rooms) != 1 || be.rooms["ref-9"].HostPIN == "" {
		t.Fatalf("ref %q, %d creates, rooms %v", got.Status.BackendRef, be.creates, be.rooms)
	}
}

func TestVMRReconcileWithEmbeddedBackend(t *testing.T) {
	vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) { v.Generation = 1 })
	c := newFakeClient(t, vmr)
	r := newTestReconciler(c, embedded.New())
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}
	for range 2 {
		if _, err := r.Reconcile(context.Background(), req); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}
	got := &v1.VMR{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	ready := findCondition(got.Status.Conditions, v1.ReadyCondition)
	if got.Status.BackendRef != "embedded:visio-uid-1" || ready == nil || ready.Status != metav1.ConditionTrue ||
		ready.Message != "room "+got.Status.NumericID+" provisioned in embedded" {
		t.Fatalf("status = %+v", got.Status)
	}
}

func TestVMRReconcileStallsOnOwnerAndPINs(t *testing.T) {
	licensed := metav1.Condition{Type: v1.LicensedCondition, Status: metav1.ConditionTrue, Reason: v1.ReasonLicensed,
		LastTransitionTime: metav1.Now()}
	inactive := false
	cases := []struct {
		name   string
		objs   []client.Object
		mutate func(*v1.VMR)
		reason string
		text   string
	}{
		{name: "owner missing", mutate: func(v *v1.VMR) { v.Spec.Owner = "alice" },
			reason: v1.ReasonOwnerNotLicensed, text: `owner "alice" does not exist`},
		{name: "owner unlicensed", mutate: func(v *v1.VMR) { v.Spec.Owner = "alice" },
			objs:   []client.Object{&v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "mairie"}}},
			reason: v1.ReasonOwnerNotLicensed, text: "holds no license"},
		{name: "owner inactive", mutate: func(v *v1.VMR) { v.Spec.Owner = "alice" },
			objs: []client.Object{&v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "mairie"},
				Spec: v1.PlatformUserSpec{Active: &inactive}, Status: v1.PlatformUserStatus{StatusBase: v1.StatusBase{Conditions: []metav1.Condition{licensed}}}}},
			reason: v1.ReasonOwnerNotLicensed, text: "deactivated"},
		{name: "PIN Secret missing", mutate: func(v *v1.VMR) { v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "mine"} },
			reason: v1.ReasonInvalidPINs, text: `"mine" named by spec.pinSecretRef does not exist`},
		{name: "weak PINs", mutate: func(v *v1.VMR) { v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "mine"} },
			objs: []client.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "mairie"},
				Data: map[string][]byte{pins.HostPINKey: []byte("123456"), pins.GuestPINKey: []byte("123456")}}},
			reason: v1.ReasonInvalidPINs, text: "data[hostPin]"},
		{name: "generated Secret taken",
			objs: []client.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "conseil-pins", Namespace: "mairie"},
				Data: map[string][]byte{pins.HostPINKey: []byte("482915")}}},
			reason: v1.ReasonInvalidPINs, text: "was not created for this room"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) {
				v.Generation = 1
				if tc.mutate != nil {
					tc.mutate(v)
				}
			})
			c := newFakeClient(t, append(tc.objs, vmr)...)
			be := newFakeBackend()
			r := newTestReconciler(c, be)
			req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}
			if _, err := r.Reconcile(context.Background(), req); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			got := &v1.VMR{}
			if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
				t.Fatal(err)
			}
			stalled := findCondition(got.Status.Conditions, v1.StalledCondition)
			if stalled == nil || stalled.Reason != tc.reason || !strings.Contains(stalled.Message, tc.text) {
				t.Fatalf("Stalled = %+v; want %s containing %q", stalled, tc.reason, tc.text)
			}
			if strings.Contains(stalled.Message, "123456") || strings.Contains(stalled.Message, "482915") {
				t.Fatalf("message reveals a PIN: %s", stalled.Message)
			}
			if be.calls() != 0 {
				t.Fatalf("%d backend calls for a blocked room", be.calls())
			}
		})
	}
}

func TestVMRDeletion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  v1.DeletionPolicy
		ref     string
		deletes int
		left    int
	}{
		{name: "recorded ref", ref: "ref-7", deletes: 1},
		{name: "unrecorded room found by key", deletes: 1},
		{name: "retain", policy: v1.DeletionPolicyRetain, ref: "ref-7", left: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := metav1.Now()
			vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) {
				v.Finalizers = []string{v1.VMRFinalizer}
				v.DeletionTimestamp = &now
				v.Spec.DeletionPolicy = tc.policy
				v.Status.BackendRef = tc.ref
			})
			c := newFakeClient(t, vmr)
			be := newFakeBackend()
			be.rooms["ref-7"] = backend.Room{Key: "visio-uid-1"}
			r := newTestReconciler(c, be)
			req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}
			if _, err := r.Reconcile(context.Background(), req); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if be.deletes != tc.deletes || len(be.rooms) != tc.left {
				t.Fatalf("%d deletes, rooms left %v", be.deletes, be.rooms)
			}
			if err := c.Get(context.Background(), req.NamespacedName, &v1.VMR{}); !apierrors.IsNotFound(err) {
				t.Fatalf("VMR still there after its finalizer: %v", err)
			}
		})
	}
}

func TestVMRReconcileRecreatesRoomDeletedBehindItsBack(t *testing.T) {
	c, be, r, req := reconciledOnce(t, func(v *v1.VMR) { v.Generation = 1 })
	delete(be.rooms, "ref-1")
	r.clock.(*clocktesting.FakeClock).Step(r.DriftCheckInterval)
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got := &v1.VMR{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if got.Status.BackendRef != "ref-2" || be.creates != 2 || len(be.rooms) != 1 ||
		!isConditionTrue(got.Status.Conditions, v1.ReadyCondition) {
		t.Fatalf("ref %q, %d creates, rooms %v, conditions %+v", got.Status.BackendRef, be.creates, be.rooms, got.Status.Conditions)
	}
}

// Test helpers.

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// reconciledOnce sets up a room "conseil" of namespace "mairie", changed by
// mutate, with a fake client and backend, and reconciles it once.
func reconciledOnce(t *testing.T, mutate func(*v1.VMR)) (client.Client, *fakeBackend, *VMRReconciler, ctrl.Request) {
	t.Helper()
	vmr := testVMR("conseil", "mairie", "uid-1", mutate)
	c := newFakeClient(t, vmr)
	be := newFakeBackend()
	r := newTestReconciler(c, be)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	return c, be, r, req
}

func newFakeClient(t *testing.T, objs ...client.Object) client.Client {
	// Every room lives in an entity namespace.
	seen := map[string]bool{}
	for _, o := range objs {
		if _, ok := o.(*v1.VMR); !ok || seen[o.GetNamespace()] {
			continue
		}
		seen[o.GetNamespace()] = true
		e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: o.GetNamespace(), UID: types.UID("entity-" + o.GetNamespace())},
			Status: v1.EntityStatus{Namespace: o.GetNamespace()}}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.GetNamespace(), Labels: map[string]string{v1.EntityLabel: e.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Entity", Name: e.Name, UID: e.UID, Controller: ptr.To(true)}}}}
		objs = append(objs, e, ns)
	}
	return fake.NewClientBuilder().
		WithScheme(testScheme(t)).
		WithObjects(objs...).
		WithStatusSubresource(&v1.VMR{}, &v1.PlatformUser{}).
		WithIndex(&v1.VMR{}, index.VMRDialString, func(o client.Object) []string { return index.DialStrings(o.(*v1.VMR)) }).
		WithIndex(&v1.VMR{}, index.VMROwner, func(o client.Object) []string {
			if owner := o.(*v1.VMR).Spec.Owner; owner != "" {
				return []string{owner}
			}
			return nil
		}).
		Build()
}

func newTestReconciler(c client.Client, be backend.Backend) *VMRReconciler {
	return &VMRReconciler{
		Client:             c,
		Recorder:           events.NewFakeRecorder(100),
		Backend:            be,
		NumericIDMin:       100000,
		NumericIDMax:       999999,
		BackendTimeout:     15 * time.Second,
		DriftCheckInterval: 10 * time.Minute,
		clock:              clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
}

func testVMR(name, namespace, uid string, mutate func(*v1.VMR)) *v1.VMR {
	v := &v1.VMR{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: types.UID(uid)},
		Spec:       v1.VMRSpec{DisplayName: name},
	}
	if mutate != nil {
		mutate(v)
	}
	return v
}

// fakeBackend keeps rooms in memory and counts calls.
type fakeBackend struct {
	mu                                     sync.Mutex
	rooms                                  map[string]backend.Room
	next                                   int
	finds, gets, creates, updates, deletes int
	createErr                              error
}

func newFakeBackend() *fakeBackend { return &fakeBackend{rooms: map[string]backend.Room{}} }

func (f *fakeBackend) calls() int { return f.finds + f.gets + f.creates + f.updates + f.deletes }

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Find(_ context.Context, key string) (string, *backend.Room, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds++
	for ref, room := range f.rooms {
		if room.Key == key {
			return ref, &room, nil
		}
	}
	return "", nil, backend.ErrNotFound
}

func (f *fakeBackend) Get(_ context.Context, ref string) (*backend.Room, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	room, ok := f.rooms[ref]
	if !ok {
		return nil, backend.ErrNotFound
	}
	return &room, nil
}

// Create is idempotent by key, as backend.Backend requires: a room with the
// key is made to match and keeps its reference.
func (f *fakeBackend) Create(_ context.Context, room backend.Room) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	for ref, have := range f.rooms {
		if have.Key == room.Key {
			f.rooms[ref] = room
			return ref, f.createErr
		}
	}
	f.next++
	ref := fmt.Sprint("ref-", f.next)
	f.rooms[ref] = room
	return ref, f.createErr
}

func (f *fakeBackend) Update(_ context.Context, ref string, room backend.Room) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates++
	if _, ok := f.rooms[ref]; !ok {
		return backend.ErrNotFound
	}
	f.rooms[ref] = room
	return nil
}

func (f *fakeBackend) Delete(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes++
	delete(f.rooms, ref)
	return nil
}

func TestVMRSetupWithManager(t *testing.T) {
	mgr, err := ctrl.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, ctrl.Options{
		Scheme:  testScheme(t),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		t.Skipf("no manager without an API server: %v", err)
	}
	r := &VMRReconciler{Client: mgr.GetClient(), Recorder: events.NewFakeRecorder(1), Backend: embedded.New(), MaxConcurrentReconciles: 4,
		NumericIDMin: 100000, NumericIDMax: 999999, BackendTimeout: time.Second}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatalf("SetupWithManager: %v", err)
	}
	// The settings have one owner, operator.Options: a reconciler built
	// without them is refused, never silently given defaults of its own.
	bare := &VMRReconciler{Client: mgr.GetClient(), Backend: embedded.New()}
	if err := bare.setup(); err == nil {
		t.Error("a reconciler without a numeric id range or a backend timeout was accepted")
	}
}
