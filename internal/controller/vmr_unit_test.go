package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/embedded"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/pins"
)

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
	pass := &vmrPass{}
	if err := r.phaseNumericID(context.Background(), me, pass); err != nil || pass.block != nil || pass.numericID != "1004" {
		t.Fatalf("numericID = %q, %v, %v; want 1004, the only number nobody claims", pass.numericID, pass.block, err)
	}
	other := testVMR("other", "ns1", "uid-other", nil)
	pass = &vmrPass{}
	if err := r.phaseNumericID(context.Background(), other, pass); err != nil || pass.block == nil || pass.block.reason != v1.ReasonNumericIDsExhausted {
		t.Fatalf("numericID in a full range = %+v, %v; want a block", pass.block, err)
	}
	given := testVMR("given", "ns1", "uid-given", func(v *v1.VMR) { v.Spec.NumericID = "555555" })
	pass = &vmrPass{}
	if _ = r.phaseNumericID(context.Background(), given, pass); pass.numericID != "555555" {
		t.Fatalf("numericID with spec.numericId = %q", pass.numericID)
	}
}

// Two rooms asking for one alias: the first to claim it holds it, the other
// stalls naming the holder, and gets it once the holder is gone.
func TestVMRClaimsMakeOneHolder(t *testing.T) {
	first := testVMR("first", "ns1", "uid-1", func(v *v1.VMR) {
		v.Generation = 1
		v.Spec.Aliases = []string{"conseil@visio.example"}
	})
	second := testVMR("second", "ns2", "uid-2", func(v *v1.VMR) {
		v.Generation = 1
		v.Spec.Aliases = []string{"conseil@visio.example"}
	})
	c := newFakeClient(t, first, second)
	be := newFakeBackend()
	r := newTestReconciler(c, be)
	ctx := context.Background()
	reconcile := func(v *v1.VMR) *v1.VMR {
		t.Helper()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(v)}); err != nil {
			t.Fatal(err)
		}
		got := &v1.VMR{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(v), got); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return got
	}
	if got := reconcile(first); !isConditionTrue(got.Status.Conditions, v1.ReadyCondition) {
		t.Fatalf("first: %+v", got.Status.Conditions)
	}
	got := reconcile(second)
	stalled := findCondition(got.Status.Conditions, v1.StalledCondition)
	if stalled == nil || stalled.Reason != v1.ReasonAliasConflict || !strings.Contains(stalled.Message, "ns1/first") {
		t.Fatalf("second: %+v", got.Status.Conditions)
	}
	if got.Status.JoinURL != "" || got.Status.SIPURI != "" || len(got.Status.Aliases) != 0 || got.Status.BackendRef != "" || be.creates != 1 {
		t.Fatalf("a room in conflict advertises or holds something: %+v, %d creates", got.Status, be.creates)
	}
	claims := &v1.DialStringClaimList{}
	if err := c.List(ctx, claims); err != nil {
		t.Fatal(err)
	}
	for _, cl := range claims.Items {
		if cl.Spec.DialString == "conseil@visio.example" && cl.Spec.VMR.UID != "uid-1" {
			t.Fatalf("the alias is claimed by %+v", cl.Spec.VMR)
		}
	}

	// The holder goes: its claims go with it, and the other room proceeds.
	if err := c.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	reconcile(first)
	if got := reconcile(second); !isConditionTrue(got.Status.Conditions, v1.ReadyCondition) {
		t.Fatalf("second after the holder went: %+v", got.Status.Conditions)
	}
	if err := c.List(ctx, claims); err != nil {
		t.Fatal(err)
	}
	for _, cl := range claims.Items {
		if cl.Spec.VMR.UID == "uid-1" {
			t.Fatalf("claim of the deleted room left: %+v", cl.Spec)
		}
	}
}

// A room that drops an alias releases that claim only: its other claims and
// other rooms' claims stay.
func TestVMRReleasesOnlyTheAliasItDropped(t *testing.T) {
	first := testVMR("first", "ns1", "uid-1", func(v *v1.VMR) {
		v.Generation = 1
		v.Spec.Aliases = []string{"conseil@visio.example", "bureau@visio.example"}
	})
	second := testVMR("second", "ns2", "uid-2", func(v *v1.VMR) {
		v.Generation = 1
		v.Spec.Aliases = []string{"accueil@visio.example"}
	})
	c := newFakeClient(t, first, second)
	r := newTestReconciler(c, newFakeBackend())
	ctx := context.Background()
	for _, v := range []*v1.VMR{first, second} {
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(v)}); err != nil {
			t.Fatal(err)
		}
	}
	held := func() map[string]string {
		t.Helper()
		claims := &v1.DialStringClaimList{}
		if err := c.List(ctx, claims); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, cl := range claims.Items {
			out[cl.Spec.DialString] = cl.Spec.VMR.UID
		}
		return out
	}
	before := held()
	if before["bureau@visio.example"] != "uid-1" || before["accueil@visio.example"] != "uid-2" {
		t.Fatalf("claims before: %v", before)
	}

	got := &v1.VMR{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(first), got); err != nil {
		t.Fatal(err)
	}
	got.Spec.Aliases = []string{"conseil@visio.example"}
	got.Generation++
	if err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(first)}); err != nil {
		t.Fatal(err)
	}
	after := held()
	if _, ok := after["bureau@visio.example"]; ok {
		t.Fatalf("the dropped alias is still claimed: %v", after)
	}
	delete(before, "bureau@visio.example")
	if !maps.Equal(after, before) {
		t.Fatalf("claims after = %v, want %v", after, before)
	}
}

// A claim whose room is gone without releasing it (finalizer removed by
// hand) is stale: it is replaced, never left blocking.
func TestVMRStaleClaimIsReplaced(t *testing.T) {
	vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) {
		v.Generation = 1
		v.Spec.NumericID = "4242"
	})
	stale := newClaim(testVMR("gone", "elsewhere", "uid-gone", nil), "4242")
	c := newFakeClient(t, vmr, stale)
	r := newTestReconciler(c, newFakeBackend())
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}); err != nil {
		t.Fatal(err)
	}
	got := &v1.DialStringClaim{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: stale.Name}, got); err != nil || got.Spec.VMR.UID != "uid-1" {
		t.Fatalf("claim = %+v, %v; want it held by the room", got.Spec, err)
	}
}

// After a restore of the backend, the id recorded in status names somebody
// else's room: it is never written to, and the room is Stalled.
func TestVMRForeignRoomAtRecordedID(t *testing.T) {
	c, be, r, req := reconciledOnce(t, func(v *v1.VMR) { v.Generation = 1 })
	be.rooms["ref-1"] = backend.Room{Key: "somebody-else", Name: "their room"}
	r.clock.(*clocktesting.FakeClock).Step(r.DriftCheckInterval)
	if _, err := r.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got := &v1.VMR{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	stalled := findCondition(got.Status.Conditions, v1.StalledCondition)
	if stalled == nil || stalled.Reason != v1.ReasonBackendConflict || got.Status.BackendRef != "" || be.updates != 0 || be.deletes != 0 {
		t.Fatalf("status %+v, %d updates, %d deletes", got.Status, be.updates, be.deletes)
	}
	if be.rooms["ref-1"].Key != "somebody-else" {
		t.Fatal("the foreign room changed")
	}
}

// A backend message that quotes a number with the PIN inside reveals nothing
// of it.
func TestVMRRedactsPINsInsideNumbers(t *testing.T) {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "mairie", Labels: map[string]string{v1.PINSecretLabel: "true"}},
		Data: map[string][]byte{pins.HostPINKey: []byte("582913")}}
	vmr := testVMR("conseil", "mairie", "uid-1", func(v *v1.VMR) {
		v.Generation = 1
		v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "mine"}
	})
	c := newFakeClient(t, vmr, secret)
	be := newFakeBackend()
	be.createErr = errors.New("conference 15829139 refused")
	r := newTestReconciler(c, be)
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(vmr)}); err == nil {
		t.Fatal("want the backend error back")
	}
	got := &v1.VMR{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(vmr), got); err != nil {
		t.Fatal(err)
	}
	ready := findCondition(got.Status.Conditions, v1.ReadyCondition)
	if ready == nil || strings.Contains(ready.Message, "1582") || strings.Contains(ready.Message, "9139") || !strings.Contains(ready.Message, "[redacted]") {
		t.Fatalf("message = %v", ready)
	}
}

// A PIN changed while no operator ran is applied by the first pass of the
// next one: the status records the version of the Secret applied.
func TestVMRPINChangedWhileDown(t *testing.T) {
	c, be, _, req := reconciledOnce(t, func(v *v1.VMR) { v.Generation = 1 })
	got := &v1.VMR{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "mairie", Name: "conseil-pins"}, secret); err != nil {
		t.Fatal(err)
	}
	if got.Status.PINSecretResourceVersion != secret.ResourceVersion {
		t.Fatalf("status records version %q, the Secret is at %q", got.Status.PINSecretResourceVersion, secret.ResourceVersion)
	}
	secret.Data[pins.HostPINKey] = []byte("905173")
	if err := c.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	// A new process, drift checks off.
	r2 := newTestReconciler(c, be)
	r2.DriftCheckInterval = 0
	if _, err := r2.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if be.rooms["ref-1"].HostPIN != "905173" {
		t.Fatal("the PIN changed while the operator was down was not applied at its first pass")
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
	// A drift check waits behind rooms still to provision, those of the
	// initial listing after a restart included (ranked low, and older).
	if res.Priority == nil || *res.Priority != handler.LowPriority {
		t.Errorf("drift check requeued with priority %v; want %d", res.Priority, handler.LowPriority)
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
	if be.creates != 1 || be.finds != 0 || be.rooms["ref-1"].HostPIN != host || be.rooms["ref-1"].Name != "conseil ("+st.NumericID+")" {
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
		WithIndex(&v1.VMR{}, index.VMRPINSecret, func(o client.Object) []string { return []string{index.PINSecretName(o.(*v1.VMR))} }).
		WithIndex(&v1.VMR{}, index.VMRDialString, func(o client.Object) []string { return index.DialStrings(o.(*v1.VMR)) }).
		WithIndex(&v1.DialStringClaim{}, index.ClaimVMR, index.ClaimHolder).
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

func (f *fakeBackend) Get(_ context.Context, ref, key string) (*backend.Room, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	room, ok := f.rooms[ref]
	switch {
	case !ok:
		return nil, backend.ErrNotFound
	case room.Key != key:
		return nil, backend.ErrConflict
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
	have, ok := f.rooms[ref]
	switch {
	case !ok:
		return backend.ErrNotFound
	case have.Key != room.Key:
		return backend.ErrConflict
	}
	f.updates++
	f.rooms[ref] = room
	return nil
}

func (f *fakeBackend) Delete(_ context.Context, ref, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if have, ok := f.rooms[ref]; ok && have.Key != key {
		return backend.ErrConflict
	}
	f.deletes++
	delete(f.rooms, ref)
	return nil
}

func (f *fakeBackend) Release(_ context.Context, ref, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if have, ok := f.rooms[ref]; ok {
		if have.Key != key {
			return backend.ErrConflict
		}
		have.Key = "retained-" + key
		f.rooms[ref] = have
	}
	return nil
}

func (f *fakeBackend) ListTagged(_ context.Context, prefix string) ([]backend.Tagged, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []backend.Tagged
	for ref, room := range f.rooms {
		if strings.HasPrefix(room.Key, prefix) {
			out = append(out, backend.Tagged{Ref: ref, Key: room.Key})
		}
	}
	return out, nil
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

// The sweep removes the rooms carrying our key whose VMR is gone, and nothing
// else: not a room whose VMR exists, not a foreign or retained one.
func TestVMRSweepRemovesOnlyOrphans(t *testing.T) {
	vmr := testVMR("conseil", "mairie", "uid-1", nil)
	c := newFakeClient(t, vmr)
	be := newFakeBackend()
	be.rooms["ref-1"] = backend.Room{Key: "visio-uid-1"}
	be.rooms["ref-2"] = backend.Room{Key: "visio-uid-gone"}
	be.rooms["ref-3"] = backend.Room{Key: ""}
	be.rooms["ref-4"] = backend.Room{Key: "retained-visio-uid-old"}
	be.rooms["ref-5"] = backend.Room{Key: "someone-else"}
	r := newTestReconciler(c, be)
	if err := r.setup(); err != nil {
		t.Fatal(err)
	}
	s := &roomSweeper{r: r, interval: time.Minute}
	removed, err := s.sweep(context.Background())
	if err != nil || removed != 1 {
		t.Fatalf("sweep = %d, %v; want 1 room removed", removed, err)
	}
	if _, ok := be.rooms["ref-2"]; ok || len(be.rooms) != 4 {
		t.Fatalf("rooms left: %v", be.rooms)
	}
	if removed, err := s.sweep(context.Background()); err != nil || removed != 0 {
		t.Fatalf("second sweep = %d, %v", removed, err)
	}
}
