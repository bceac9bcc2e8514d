package v1alpha1

import (
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LicenseDecisionState is the platform's answer to a LicenseRequest.
// +kubebuilder:validation:Enum=Approved;Denied
type LicenseDecisionState string

const (
	// DecisionApproved: the requested licenses count in the pool.
	DecisionApproved LicenseDecisionState = "Approved"
	// DecisionDenied: the request is refused; it never counts.
	DecisionDenied LicenseDecisionState = "Denied"
)

// LicenseRequestSpec is what an entity asks the platform for. It is immutable:
// to change a request, delete it and ask again.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: to change a license request, delete it and ask again"
type LicenseRequestSpec struct {
	// licensePool names the LicensePool, in the same namespace, that the
	// licenses are asked for. Defaults to "default".
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	LicensePool string `json:"licensePool,omitempty"`

	// licenses is the number of extra licenses asked for.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Licenses int32 `json:"licenses"`

	// reason says why the entity needs the licenses, for whoever decides.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`

	// duration is how long the licenses count once approved, e.g. "2160h" for
	// 90 days; at least one hour. Unset, they count until the request is deleted.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|ns))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="duration must be at least 1h"
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// LicenseDecision is the platform's answer, written once through the status
// subresource by a Concierge or a platform administrator. It is final.
type LicenseDecision struct {
	// state is Approved or Denied.
	// +required
	State LicenseDecisionState `json:"state"`
	// by is the user who decided, as the API server names it: the admission
	// policy visio-license-decision requires the writer's own name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=320
	By string `json:"by"`
	// at is when the decision was taken; an approval's licenses count from then.
	// +required
	At metav1.Time `json:"at"`
	// message is the decider's word to the entity, e.g. why a request is denied.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// LicenseRequestStatus is the decision and what the operator observed of it.
type LicenseRequestStatus struct {
	StatusBase `json:",inline"`

	// decision is the platform's answer; unset while the request waits.
	// +optional
	Decision *LicenseDecision `json:"decision,omitempty"`

	// expiresAt is when an approved request's licenses stop counting: the
	// decision's time plus spec.duration. Unset when they do not expire.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// LicenseRequest is an entity's request for more licenses in one of its pools
// (seed 000: "licences supplémentaires sur demande"). An entity Administrator
// creates it; a Concierge or a platform administrator approves or denies it
// (kubectl visio licenses approve|deny). Approved and unexpired, its licenses
// count in the pool's capacity like a grant; deleting it takes them back.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lreq,categories=visio
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.licensePool`
// +kubebuilder:printcolumn:name="Licenses",type=integer,JSONPath=`.spec.licenses`
// +kubebuilder:printcolumn:name="Duration",type=string,JSONPath=`.spec.duration`
// +kubebuilder:printcolumn:name="Decision",type=string,JSONPath=`.status.decision.state`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LicenseRequest struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what is asked for; immutable.
	// +required
	Spec LicenseRequestSpec `json:"spec"`
	// status holds the decision and what the operator observed.
	// Defaulted so that a request the operator has not reconciled yet reads
	// as in progress, as every kind of the group does.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status LicenseRequestStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// LicenseRequestList is a list of LicenseRequests.
type LicenseRequestList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LicenseRequest `json:"items"`
}

// PoolName is the pool the request is for, "default" when unset.
func (r *LicenseRequest) PoolName() string {
	if r.Spec.LicensePool == "" {
		return DefaultLicensePool
	}
	return r.Spec.LicensePool
}

// Approved reports whether the platform approved the request.
func (r *LicenseRequest) Approved() bool {
	return r.Status.Decision != nil && r.Status.Decision.State == DecisionApproved
}

// ExpiryOf is when an approved request's licenses stop counting, nil when
// they never do or the request is not approved.
func (r *LicenseRequest) ExpiryOf() *metav1.Time {
	if !r.Approved() || r.Spec.Duration == nil {
		return nil
	}
	t := metav1.NewTime(r.Status.Decision.At.Add(r.Spec.Duration.Duration))
	return &t
}

// ExpiredAt reports whether an approved request has stopped counting at now.
func (r *LicenseRequest) ExpiredAt(now time.Time) bool {
	exp := r.ExpiryOf()
	return exp != nil && !now.Before(exp.Time)
}

// Pending reports whether the request awaits a decision.
func (r *LicenseRequest) Pending() bool {
	return r.Status.Decision == nil && r.DeletionTimestamp.IsZero()
}

// CountsAt reports whether the request's licenses count in its pool at now:
// approved, unexpired, not being deleted, and carrying the finalizer the pool
// controller adds before it first counts a request (so that its deletion
// waits until the pool has taken the licenses back).
func (r *LicenseRequest) CountsAt(now time.Time) bool {
	return r.Approved() && !r.ExpiredAt(now) && r.DeletionTimestamp.IsZero() && r.HasFinalizer()
}

// HasFinalizer reports whether the pool controller has taken charge of the request.
func (r *LicenseRequest) HasFinalizer() bool {
	for _, f := range r.Finalizers {
		if f == LicenseRequestFinalizer {
			return true
		}
	}
	return false
}

// RequestTotals is what a pool's LicenseRequests add to it at an instant.
type RequestTotals struct {
	// Granted is the licenses of the requests that count (CountsAt).
	Granted int64
	// Requested is the licenses of the requests awaiting a decision.
	Requested int64
	// NextExpiry is when the next counted request expires, nil if none does.
	NextExpiry *metav1.Time
}

// TotalRequests sums the requests of one pool at now.
func TotalRequests(requests []LicenseRequest, now time.Time) RequestTotals {
	var t RequestTotals
	for i := range requests {
		r := &requests[i]
		switch {
		case r.Pending():
			t.Requested += int64(r.Spec.Licenses)
		case r.CountsAt(now):
			t.Granted += int64(r.Spec.Licenses)
			if exp := r.ExpiryOf(); exp != nil && (t.NextExpiry == nil || exp.Before(t.NextExpiry)) {
				t.NextExpiry = exp
			}
		}
	}
	return t
}

// CapacityWith is CapacityAt plus the licenses of the pool's requests that
// count at now, with the earlier of the two next expiries.
func (p *LicensePool) CapacityWith(requests RequestTotals, now time.Time) (int32, *metav1.Time) {
	capacity, next := p.CapacityAt(now)
	total := min(int64(capacity)+requests.Granted, math.MaxInt32)
	if requests.NextExpiry != nil && (next == nil || requests.NextExpiry.Before(next)) {
		next = requests.NextExpiry.DeepCopy()
	}
	return int32(total), next
}
