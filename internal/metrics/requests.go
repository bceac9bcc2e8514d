package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the state label of visio_license_requests.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestDenied   = "denied"
	RequestExpired  = "expired"
)

var (
	licenseRequests = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_license_requests",
		Help: "LicenseRequests of the pool, by state: pending (awaiting a decision), approved (counting), denied, expired.",
	}, append(append([]string(nil), poolLabels...), LabelState))
	oldestPendingRequest = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "visio_license_request_oldest_pending_timestamp_seconds",
		Help: "Unix time at which the pool's oldest LicenseRequest still awaiting a decision was created; absent when none waits.",
	}, poolLabels)
)

// RequestCounts is how many LicenseRequests of a pool are in each state, and
// when the oldest one awaiting a decision was made (zero when none waits).
type RequestCounts struct {
	Pending, Approved, Denied, Expired int
	OldestPending                      time.Time
}

// ObserveRequests publishes the requests of a pool as its controller counted
// them in this pass. The four states are always present, so that a query
// finds the zeros of a pool with no request.
func ObserveRequests(namespace, entity, pool string, c RequestCounts) {
	l := prometheus.Labels{LabelNamespace: namespace, LabelEntity: entity, LabelLicensePool: pool}
	for state, n := range map[string]int{RequestPending: c.Pending, RequestApproved: c.Approved,
		RequestDenied: c.Denied, RequestExpired: c.Expired} {
		licenseRequests.WithLabelValues(namespace, entity, pool, state).Set(float64(n))
	}
	if c.OldestPending.IsZero() {
		oldestPendingRequest.Delete(l)
	} else {
		oldestPendingRequest.With(l).Set(float64(c.OldestPending.Unix()))
	}
}
