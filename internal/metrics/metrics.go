// Package metrics declares the operator's Prometheus metrics (DESIGN.md,
// "Statistics") and the few calls the controllers, the admission webhook and
// the backend clients make to keep them.
//
// Every number comes from what its caller already holds: a pool's counts from
// the status its controller just computed, an entity's from its rollup, a
// room's provisioning time from its own status. Nothing here reads the API
// server. Labels name entities, namespaces and pools only, never a user or a
// room, and a series goes when its pool or entity goes.
//
// The metrics are registered on controller-runtime's registry, so the
// manager's metrics endpoint (with its authentication and authorisation
// filter) serves them beside controller-runtime's own.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Label names.
const (
	LabelNamespace   = "namespace"
	LabelEntity      = "entity"
	LabelLicensePool = "licensepool"
	LabelResult      = "result"
	LabelRole        = "role"
	LabelState       = "state"
	LabelBackend     = "backend"
	LabelOperation   = "operation"
	LabelCode        = "code"
	LabelParent      = "parent"
	LabelOrg         = "organisation"
)

// Values of the result label of visio_license_admissions_total.
const (
	ResultAdmitted = "admitted"
	ResultRefused  = "refused"
)

// Values of the state labels.
const (
	UserLicensed = "licensed"
	UserWaiting  = "waiting"
	UserInactive = "inactive"
	VMRReady     = "ready"
	VMRNotReady  = "not_ready"
)

// Values of the code label of visio_backend_requests_total besides HTTP
// status codes.
const (
	CodeTimeout = "timeout" // no answer within the time limit
	CodeError   = "error"   // no answer: connection refused, reset, TLS...
	CodeOK      = "ok"      // a backend that answers without HTTP succeeded
	CodeMissing = "not_found"
)

var poolLabels = []string{LabelNamespace, LabelEntity, LabelLicensePool}

var (
	poolCapacity = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_licensepool_capacity",
		Help: "Licenses the pool holds now: spec.licenses plus the grants and approved LicenseRequests not yet expired.",
	}, poolLabels)
	poolUsed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_licensepool_used",
		Help: "Licenses of the pool held by users.",
	}, poolLabels)
	poolAvailable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_licensepool_available",
		Help: "Licenses of the pool that no user holds.",
	}, poolLabels)
	poolPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_licensepool_pending",
		Help: "Active users of the pool waiting for a license because it is full.",
	}, poolLabels)
	poolNextExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_licensepool_next_expiry_timestamp_seconds",
		Help: "Unix time at which the pool's next grant of licenses expires; absent when no grant expires.",
	}, poolLabels)
	poolDelegated = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_licensepool_delegated",
		Help: "Licenses the pool has taken out of its own capacity for the pools of its entity's sub-entities (status.delegated).",
	}, poolLabels)
	admissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "visio_license_admissions_total",
		Help: "Activations of users in the pool decided at admission: admitted, or refused because the pool " +
			"(enforcement Deny) was full. Dry runs are not counted.",
	}, []string{LabelNamespace, LabelEntity, LabelLicensePool, LabelResult})
	revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "visio_license_revocations_total",
		Help: "Licenses of the pool taken back from users because its capacity shrank (licenses removed or a grant expired).",
	}, poolLabels)
	entityUsers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_entity_users",
		Help: "Users of the entity by role and state: licensed (holds a license), waiting (active, holds no license) or inactive.",
	}, []string{LabelEntity, LabelRole, LabelState})
	entityInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_entity_info",
		Help: "Always 1: where the entity stands in its organisation. parent is the entity it is a sub-entity of " +
			"(empty for none, or while it is kept out of the hierarchy); organisation is the parent, or the entity itself.",
	}, []string{LabelEntity, LabelParent, LabelOrg})
	entityVMRs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_entity_vmrs",
		Help: "Rooms of the entity by state: ready (provisioned as its spec says) or not_ready.",
	}, []string{LabelEntity, LabelState})
	provisionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "visio_vmr_provision_duration_seconds",
		Help: "Seconds from when a room was asked for (created, or its spec changed) until it was Ready, " +
			"observed once per room and change.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600},
	}, []string{LabelBackend})
	backendRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "visio_backend_requests_total",
		Help: "Requests sent to the room backend, by operation and answer: the HTTP status, " +
			"timeout (no answer in time) or error (no answer).",
	}, []string{LabelBackend, LabelOperation, LabelCode})
)

// Collectors are every metric of the package, for tests that register them on
// a registry of their own.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{poolCapacity, poolUsed, poolAvailable, poolPending, poolNextExpiry, poolDelegated,
		admissions, revocations, entityUsers, entityInfo, entityVMRs, provisionDuration, backendRequests,
		licenseRequests, oldestPendingRequest}
}

func init() {
	crmetrics.Registry.MustRegister(Collectors()...)
}

// poolVecs hold one series per pool, deleted together.
var poolVecs = []interface {
	DeletePartialMatch(prometheus.Labels) int
}{poolCapacity, poolUsed, poolAvailable, poolPending, poolNextExpiry, poolDelegated, admissions, revocations,
	licenseRequests, oldestPendingRequest}

// entities remembers the entity label each pool's series carry, so that a
// pool whose namespace changes hands loses its old series.
var entities = struct {
	sync.Mutex
	m map[poolKey]string
}{m: map[poolKey]string{}}

type poolKey struct{ namespace, pool string }

// deletePool removes every series of the pool.
func deletePool(namespace, pool string) {
	for _, v := range poolVecs {
		v.DeletePartialMatch(prometheus.Labels{LabelNamespace: namespace, LabelLicensePool: pool})
	}
}
