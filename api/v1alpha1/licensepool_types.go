package v1alpha1

import (
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Enforcement says what happens when a user would be activated in a full pool.
// +kubebuilder:validation:Enum=Deny;Queue
type Enforcement string

const (
	// EnforcementDeny refuses, at admission, to activate a user beyond capacity.
	EnforcementDeny Enforcement = "Deny"
	// EnforcementQueue admits the user, who waits with Licensed=False and is
	// licensed first-come first-served as licenses free up.
	EnforcementQueue Enforcement = "Queue"
)

// LicensePoolSpec declares the named licenses allocated to an entity.
type LicensePoolSpec struct {
	// licenses is the number of named licenses allocated to the entity in this pool.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Licenses *int32 `json:"licenses"`

	// grants are extra licenses granted on request, each with a reason and an
	// optional expiry. An expired grant stops counting at its expiry time.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Grants []LicenseGrant `json:"grants,omitempty"`

	// enforcement is Deny (default: activating a user in a full pool is refused)
	// or Queue (the user is admitted and waits for a license).
	// +optional
	// +kubebuilder:default=Deny
	Enforcement Enforcement `json:"enforcement,omitempty"`

	// delegations hand licenses of this pool to pools of the entity's
	// sub-entities. A delegation leaves this pool's capacity before it joins
	// the child pool's (status.delegated here, status.delegatedIn there), and a
	// cut comes back only once the child pool has applied it, so delegating
	// never creates a license. A delegation to an entity that is not a
	// sub-entity of this pool's entity, or to a pool that does not exist,
	// counts on neither side (Stalled, reason DelegationInvalid).
	// +optional
	// +listType=map
	// +listMapKey=entity
	// +kubebuilder:validation:MaxItems=64
	Delegations []LicenseDelegation `json:"delegations,omitempty"`
}

// LicenseDelegation hands a number of a parent pool's licenses to a pool of
// one sub-entity.
type LicenseDelegation struct {
	// entity is the name of the sub-entity (an Entity whose spec.parent is this
	// pool's entity) that receives the licenses.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=56
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Entity string `json:"entity"`
	// licensePool names the pool, in the sub-entity's namespace, that receives
	// the licenses. Defaults to "default".
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	LicensePool string `json:"licensePool,omitempty"`
	// licenses is how many of this pool's licenses the sub-entity's pool gets.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Licenses int32 `json:"licenses"`
}

// PoolName is the receiving pool, "default" when unset.
func (d LicenseDelegation) PoolName() string {
	if d.LicensePool == "" {
		return DefaultLicensePool
	}
	return d.LicensePool
}

// DelegatedLicenses is what a parent pool has taken out of its own capacity
// for one sub-entity's pool.
type DelegatedLicenses struct {
	// entity is the sub-entity.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Entity string `json:"entity"`
	// licensePool is the receiving pool in the sub-entity's namespace.
	// +required
	// +kubebuilder:validation:MaxLength=253
	LicensePool string `json:"licensePool"`
	// licenses is how many licenses this pool has taken out of its own
	// capacity for that pool. While a cut waits for the child pool to apply
	// it, this is still what the child may count from before the cut.
	// +required
	// +kubebuilder:validation:Minimum=0
	Licenses int32 `json:"licenses"`
	// offered is how many of them the child pool may count (at most
	// licenses): a raise is offered once it is taken out, a cut at once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Offered int32 `json:"offered"`
	// revision identifies the offer; it grows whenever offered changes, so
	// that the child's acknowledgement names the offer it applied.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Revision int64 `json:"revision,omitempty"`
}

// DelegatedInLicenses is what a child pool counts of one parent pool's
// delegation, and the revision of the parent's offer it applied: the parent
// takes a cut back only once this says the child applied it.
type DelegatedInLicenses struct {
	// licensePool is the delegating pool, in the parent entity's namespace.
	// +required
	// +kubebuilder:validation:MaxLength=253
	LicensePool string `json:"licensePool"`
	// licenses is how many of the parent pool's licenses this pool counts.
	// +required
	// +kubebuilder:validation:Minimum=0
	Licenses int32 `json:"licenses"`
	// revision is the revision of the parent pool's offer (its
	// status.delegated entry) this count applies.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Revision int64 `json:"revision,omitempty"`
}

// LicenseGrant is a number of extra licenses granted to the entity on request.
type LicenseGrant struct {
	// name identifies the grant, e.g. "school-year-2026" or a ticket number.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// licenses is the number of extra licenses.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Licenses int32 `json:"licenses"`
	// reason says why the licenses were granted.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Reason string `json:"reason,omitempty"`
	// expiresAt is when the grant stops counting; unset means it never expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// LicenseReservation records a license promised at admission to a user whose
// creation or activation has not yet reached the operator's cache. It is how
// concurrent admissions see each other, as Kubernetes ResourceQuota does with
// status.used; the controller drops it once the user is seen, or after a short
// time if the user never appears.
type LicenseReservation struct {
	// user is the name of the PlatformUser the license is reserved for.
	// +required
	// +kubebuilder:validation:MaxLength=253
	User string `json:"user"`
	// reservedAt is when admission reserved the license.
	// +required
	ReservedAt metav1.Time `json:"reservedAt"`
	// generation is the generation the user has once the admitted request is
	// stored. From that generation on, the user's own state says whether it
	// holds a license, and the reservation no longer counts.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Generation int64 `json:"generation,omitempty"`
}

// CoveredBy tells whether a user seen at generation already reflects the
// request this reservation was made for, so that the user's own state counts
// instead of the reservation. A reservation without a generation is never
// covered: it waits for its TTL.
func (r LicenseReservation) CoveredBy(generation int64) bool {
	return r.Generation > 0 && generation >= r.Generation
}

// DelegationReservation records licenses promised at admission to a raise of
// spec.delegations that the API server has not stored yet, so that the
// activations admitted meanwhile in the same pool count them: the raise and
// the activations share the pool's status as their ledger, as activations do
// among themselves. The controller drops it once spec.delegations delegates
// at least that much to the entry, or after a short time if the raise never
// arrives.
type DelegationReservation struct {
	// entity is the sub-entity the raise delegates to.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Entity string `json:"entity"`
	// licensePool is the sub-entity's pool.
	// +required
	// +kubebuilder:validation:MaxLength=253
	LicensePool string `json:"licensePool"`
	// licenses is what the raise delegates to that pool, in all.
	// +required
	// +kubebuilder:validation:Minimum=1
	Licenses int32 `json:"licenses"`
	// reservedAt is when admission reserved the licenses.
	// +required
	ReservedAt metav1.Time `json:"reservedAt"`
}

// LicensePoolStatus is what the operator observed of a LicensePool.
type LicensePoolStatus struct {
	StatusBase    `json:",inline"`
	LicenseCounts `json:",inline"`

	// nextExpiry is when the next grant expires, if any.
	// +optional
	NextExpiry *metav1.Time `json:"nextExpiry,omitempty"`

	// reservations are licenses promised at admission whose users the operator
	// has not counted yet: it drops each one in the write that counts its user
	// in used and pending. Admission waits rather than let the list grow past
	// its bound, which keeps the pool well under etcd's object size.
	//
	// The list is atomic, not a map keyed by user: it is written whole, with
	// the pool's resourceVersion, by admission and by the controller, never
	// merged by server-side apply, and the API server's per-item field
	// tracking of a map list made each write of a hundred reservations cost
	// about twice the CPU (BenchmarkStatusWrite). The operator keeps one
	// reservation per user.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1000
	Reservations []LicenseReservation `json:"reservations,omitempty"`

	// delegationReservations are raises of spec.delegations admitted under
	// Deny and not yet stored, one per sub-entity pool, written whole with
	// the pool's resourceVersion like reservations.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	DelegationReservations []DelegationReservation `json:"delegationReservations,omitempty"`

	// delegated is what this pool has taken out of its own capacity for the
	// pools of its entity's sub-entities (spec.delegations), and what it
	// offers them, as of observedGeneration. A child pool counts a delegation
	// only up to its offer.
	// +optional
	// +listType=map
	// +listMapKey=entity
	// +listMapKey=licensePool
	// +kubebuilder:validation:MaxItems=128
	Delegated []DelegatedLicenses `json:"delegated,omitempty"`

	// delegatedIn is what this pool counts of the delegations of its parent
	// entity's pools, one entry per delegating pool.
	// +optional
	// +listType=map
	// +listMapKey=licensePool
	// +kubebuilder:validation:MaxItems=1024
	DelegatedIn []DelegatedInLicenses `json:"delegatedIn,omitempty"`
}

// LicensePool is a pool of named licenses of an entity. Each active
// PlatformUser naming the pool holds one license while one is free.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lp,categories=visio
// +kubebuilder:printcolumn:name="Capacity",type=integer,JSONPath=`.status.capacity`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.used`
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.available`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pending`
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcement`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LicensePool struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the allocated licenses.
	// +required
	Spec LicensePoolSpec `json:"spec"`
	// status is what the operator observed.
	// Defaulted so that an object the operator has not reconciled yet reads as
	// in progress (observedGeneration 0 < generation) rather than done: kstatus,
	// and so Flux's health checks, take an object with no status as Current.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status LicensePoolStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// LicensePoolList is a list of LicensePools.
type LicensePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LicensePool `json:"items"`
}

// CapacityAt is the pool's licenses plus the grants that have not expired at
// now, and when the next of those grants expires (nil if none does).
func (p *LicensePool) CapacityAt(now time.Time) (int32, *metav1.Time) {
	var capacity int64
	if p.Spec.Licenses != nil {
		capacity = int64(*p.Spec.Licenses)
	}
	var next *metav1.Time
	for _, g := range p.Spec.Grants {
		if g.ExpiresAt != nil && !now.Before(g.ExpiresAt.Time) {
			continue
		}
		capacity += int64(g.Licenses)
		if g.ExpiresAt != nil && (next == nil || g.ExpiresAt.Before(next)) {
			next = g.ExpiresAt.DeepCopy()
		}
	}
	return int32(min(capacity, math.MaxInt32)), next
}

// EnforcementOrDefault is the pool's enforcement, Deny when unset.
func (p *LicensePool) EnforcementOrDefault() Enforcement {
	if p.Spec.Enforcement == "" {
		return EnforcementDeny
	}
	return p.Spec.Enforcement
}
