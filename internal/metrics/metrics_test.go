package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/licensing"
)

func namespace(name, entity string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.EntityLabel: entity}}}
}

func TestPoolSeriesFollowThePool(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(namespace("entity-a", "a")).Build()
	expiry := metav1.NewTime(time.Unix(1_900_000_000, 0))
	pool := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: "entity-a", Name: "p"}}
	pool.Status.LicenseCounts = v1.LicenseCounts{Capacity: 5, Used: 4, Available: 1, Pending: 2}
	pool.Status.NextExpiry = &expiry
	pool.Status.Delegated = []v1.DelegatedLicenses{{Entity: "c1", LicensePool: "default", Licenses: 2}, {Entity: "c2", LicensePool: "x", Licenses: 3}}
	alloc := licensing.Allocation{Decisions: []licensing.Decision{{Outcome: licensing.Revoked}, {Outcome: licensing.Granted}, {Outcome: licensing.Revoked}}}
	ObservePool(context.Background(), c, pool, alloc)
	LicenseAdmission("entity-a", "a", "p", false)

	want := `
# HELP visio_licensepool_used Licenses of the pool held by users.
# TYPE visio_licensepool_used gauge
visio_licensepool_used{entity="a",licensepool="p",namespace="entity-a"} 4
# HELP visio_licensepool_next_expiry_timestamp_seconds Unix time at which the pool's next grant of licenses expires; absent when no grant expires.
# TYPE visio_licensepool_next_expiry_timestamp_seconds gauge
visio_licensepool_next_expiry_timestamp_seconds{entity="a",licensepool="p",namespace="entity-a"} 1.9e+09
# HELP visio_licensepool_delegated Licenses the pool has taken out of its own capacity for the pools of its entity's sub-entities (status.delegated).
# TYPE visio_licensepool_delegated gauge
visio_licensepool_delegated{entity="a",licensepool="p",namespace="entity-a"} 5
# HELP visio_license_revocations_total Licenses of the pool taken back from users because its capacity shrank (licenses removed or a grant expired).
# TYPE visio_license_revocations_total counter
visio_license_revocations_total{entity="a",licensepool="p",namespace="entity-a"} 2
`
	if err := testutil.CollectAndCompare(collectors(), strings.NewReader(want),
		"visio_licensepool_used", "visio_licensepool_next_expiry_timestamp_seconds", "visio_licensepool_delegated", "visio_license_revocations_total"); err != nil {
		t.Fatal(err)
	}

	// No grant expires any more: the expiry series goes, the others stay.
	pool.Status.NextExpiry = nil
	ObservePool(context.Background(), c, pool, licensing.Allocation{})
	if n := testutil.CollectAndCount(poolNextExpiry); n != 0 {
		t.Errorf("expiry series left: %d", n)
	}

	// The namespace changes hands: the old entity's series go.
	if err := c.Update(context.Background(), namespace("entity-a", "b")); err != nil {
		t.Fatal(err)
	}
	ObservePool(context.Background(), c, pool, licensing.Allocation{})
	if admissions.DeleteLabelValues("entity-a", "a", "p", ResultRefused) {
		t.Errorf("refusals of the old entity left")
	}
	if n := testutil.CollectAndCount(admissions); n != 2 {
		t.Errorf("admission series = %d, want admitted and refused of the new entity", n)
	}
	if got := testutil.ToFloat64(poolUsed.WithLabelValues("entity-a", "b", "p")); got != 4 {
		t.Errorf("used under the new entity = %v", got)
	}
	if n := testutil.CollectAndCount(poolUsed); n != 1 {
		t.Errorf("used series = %d, want 1", n)
	}

	ForgetPool("entity-a", "p")
	for _, name := range []string{"visio_licensepool_capacity", "visio_licensepool_used", "visio_licensepool_delegated", "visio_license_revocations_total"} {
		if n := testutil.CollectAndCount(collectors(), name); n != 0 {
			t.Errorf("%s: %d series left after the pool went", name, n)
		}
	}
}

func TestEntitySeries(t *testing.T) {
	user := func(role v1.PlatformUserRole, active, licensed bool) v1.PlatformUser {
		u := v1.PlatformUser{Spec: v1.PlatformUserSpec{Role: role, Active: ptr.To(active)}}
		if licensed {
			u.Status.Conditions = []metav1.Condition{{Type: v1.LicensedCondition, Status: metav1.ConditionTrue}}
		}
		return u
	}
	users := []v1.PlatformUser{
		user(v1.RoleUser, true, true), user(v1.RoleUser, true, true), user(v1.RoleUser, true, false),
		user(v1.RoleAdministrator, false, false),
	}
	ready := v1.VMR{}
	ready.Status.Conditions = []metav1.Condition{{Type: v1.ReadyCondition, Status: metav1.ConditionTrue}}
	ObserveEntity("e", users, []v1.VMR{ready, {}, {}})
	for _, tc := range []struct {
		role, state string
		want        float64
	}{{"User", "licensed", 2}, {"User", "waiting", 1}, {"Administrator", "inactive", 1}, {"Concierge", "licensed", 0}} {
		if got := testutil.ToFloat64(entityUsers.WithLabelValues("e", tc.role, tc.state)); got != tc.want {
			t.Errorf("users %s/%s = %v, want %v", tc.role, tc.state, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(entityUsers); n != 12 {
		t.Errorf("user series = %d, want 4 roles x 3 states", n)
	}
	if got := testutil.ToFloat64(entityVMRs.WithLabelValues("e", "not_ready")); got != 2 {
		t.Errorf("rooms not ready = %v", got)
	}
	ForgetEntity("e")
	if n := testutil.CollectAndCount(entityUsers) + testutil.CollectAndCount(entityVMRs); n != 0 {
		t.Errorf("%d series left after the entity went", n)
	}
}

// TestHierarchySeries: one info series per entity, that follows a sub-entity
// into and out of its parent's hierarchy and goes with it.
func TestHierarchySeries(t *testing.T) {
	entityInfo.Reset()
	want := func(series string) {
		t.Helper()
		exp := "# HELP visio_entity_info Always 1: where the entity stands in its organisation. parent is the entity it is a sub-entity of " +
			"(empty for none, or while it is kept out of the hierarchy); organisation is the parent, or the entity itself.\n" +
			"# TYPE visio_entity_info gauge\n" + series
		if err := testutil.CollectAndCompare(entityInfo, strings.NewReader(exp)); err != nil {
			t.Error(err)
		}
	}
	ObserveHierarchy("parent", "")
	ObserveHierarchy("child", "")
	ObserveHierarchy("child", "parent") // admitted into the hierarchy
	ObserveHierarchy("child", "parent") // a resync changes nothing
	want(`visio_entity_info{entity="child",organisation="parent",parent="parent"} 1
visio_entity_info{entity="parent",organisation="parent",parent=""} 1
`)
	ObserveHierarchy("child", "") // kept out of it
	want(`visio_entity_info{entity="child",organisation="child",parent=""} 1
visio_entity_info{entity="parent",organisation="parent",parent=""} 1
`)
	ForgetEntity("child")
	ForgetEntity("parent")
	if n := testutil.CollectAndCount(entityInfo); n != 0 {
		t.Errorf("%d info series left after the entities went", n)
	}
}

func TestProvisionDurationObservedOncePerChange(t *testing.T) {
	provisionDuration.Reset()
	created := time.Unix(1000, 0)
	room := func(gen int64, readyAt int64) *v1.VMR {
		v := &v1.VMR{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "r", UID: "u1", Generation: gen, CreationTimestamp: metav1.NewTime(created)}}
		if readyAt > 0 {
			v.Status.Conditions = []metav1.Condition{{Type: v1.ReadyCondition, Status: metav1.ConditionTrue, ObservedGeneration: readyAt}}
		}
		return v
	}
	count := func() uint64 { c, _ := histogram(t); return c }
	// A new room becomes Ready 3s after its creation.
	RoomSeen(room(1, 0), created.Add(time.Second))
	RoomStatusWritten("embedded", room(1, 0), room(1, 1), created.Add(3*time.Second))
	// The same transition computed again (its write was refused): not observed twice.
	RoomStatusWritten("embedded", room(1, 0), room(1, 1), created.Add(4*time.Second))
	// Already Ready: nothing to observe.
	RoomStatusWritten("embedded", room(1, 1), room(1, 1), created.Add(5*time.Second))
	if got := count(); got != 1 {
		t.Fatalf("observations = %d, want 1", got)
	}
	// The spec changes at t=100s; Ready again at t=102s.
	RoomSeen(room(2, 1), created.Add(100*time.Second))
	RoomSeen(room(2, 1), created.Add(101*time.Second)) // a second pass does not restart the clock
	RoomStatusWritten("embedded", room(2, 1), room(2, 2), created.Add(102*time.Second))
	if got := count(); got != 2 {
		t.Fatalf("observations = %d, want 2", got)
	}
	_, sum := histogram(t)
	if sum != 3+2 {
		t.Errorf("sum of durations = %v, want 5", sum)
	}
	ForgetRoom(types.NamespacedName{Namespace: "n", Name: "r"})
	if len(rooms.m) != 0 {
		t.Errorf("room still remembered")
	}
}

func TestBackendCodes(t *testing.T) {
	backendRequests.Reset()
	ctx := WithOperation(context.Background(), OpCreate)
	BackendHTTPRequest(ctx, "pexip", 201, nil)
	BackendHTTPRequest(ctx, "pexip", 0, fmt.Errorf("post: %w", context.DeadlineExceeded))
	BackendHTTPRequest(context.Background(), "pexip", 0, errors.New("connection refused"))
	BackendCall("embedded", OpGet, fmt.Errorf("x: %w", backend.ErrNotFound))
	BackendCall("embedded", OpCreate, nil)
	for _, l := range [][]string{{"pexip", "create", "201"}, {"pexip", "create", "timeout"}, {"pexip", "other", "error"},
		{"embedded", "get", "not_found"}, {"embedded", "create", "ok"}} {
		if got := testutil.ToFloat64(backendRequests.WithLabelValues(l...)); got != 1 {
			t.Errorf("%v = %v, want 1", l, got)
		}
	}
}

// collectors gathers the package's metrics on a registry of its own.
func collectors() prometheus.Collector {
	return multi(Collectors())
}

type multi []prometheus.Collector

func (m multi) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m {
		c.Describe(ch)
	}
}

func (m multi) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m {
		c.Collect(ch)
	}
}

// histogram reads the embedded backend's provisioning histogram.
func histogram(t *testing.T) (count uint64, sum float64) {
	t.Helper()
	m := &dto.Metric{}
	if err := provisionDuration.WithLabelValues("embedded").(prometheus.Metric).Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}
