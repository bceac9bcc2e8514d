package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// LicenseCounts summarises named licenses: what is allocated and who holds them.
type LicenseCounts struct {
	// capacity is the number of licenses allocated: the base licenses plus the
	// grants and approved LicenseRequests that have not expired.
	// +optional
	Capacity int32 `json:"capacity"`
	// used is the number of users holding a license.
	// +optional
	Used int32 `json:"used"`
	// available is capacity minus used, never negative.
	// +optional
	Available int32 `json:"available"`
	// pending is the number of active users waiting for a license.
	// +optional
	Pending int32 `json:"pending"`
	// requested is the number of licenses asked for by LicenseRequests that
	// await a decision; they do not count in capacity until approved.
	// +optional
	Requested int32 `json:"requested,omitempty"`
}

// StatusBase is the part of every status that tools read: the generation the
// status describes and the conditions.
type StatusBase struct {
	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions describe the object's state: Ready, Reconciling and Stalled in
	// the kstatus convention, plus the kind's own.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// GetConditions returns the conditions, for the generic condition helpers.
func (s *StatusBase) GetConditions() []metav1.Condition { return s.Conditions }

// SetConditions replaces the conditions.
func (s *StatusBase) SetConditions(c []metav1.Condition) { s.Conditions = c }
