package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// DeletionPolicy says what happens to the backend room when the VMR is deleted.
// +kubebuilder:validation:Enum=Delete;Retain
type DeletionPolicy string

const (
	// DeletionPolicyDelete removes the backend room with the VMR.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyRetain leaves the backend room in place.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// VMRSpec declares a permanent virtual meeting room of an entity.
// +kubebuilder:validation:XValidation:rule="!has(self.numericId) || !has(self.aliases) || !(self.numericId in self.aliases)",message="numericId is dialled on its own; do not repeat it in aliases",fieldPath=".aliases"
type VMRSpec struct {
	// displayName is the room's name as participants see it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=250
	DisplayName string `json:"displayName"`

	// description says what the room is for.
	// +optional
	// +kubebuilder:validation:MaxLength=250
	Description string `json:"description,omitempty"`

	// owner names the PlatformUser, in the same entity, the room belongs to. The
	// owner must be active and licensed for the room to be Ready.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Owner string `json:"owner,omitempty"`

	// aliases are extra addresses participants dial to reach the room, e.g.
	// "conseil-municipal@visio.example". Lower case, unique across the platform.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=250
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9][a-z0-9._@+-]*$`
	Aliases []string `json:"aliases,omitempty"`

	// numericId is the number participants dial, 4 to 12 digits, unique across the
	// platform. When empty the operator picks one from its configured range.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]{4,12}$`
	NumericID string `json:"numericId,omitempty"`

	// allowGuests lets participants without the host PIN join (with the guest PIN
	// when one is set). Requires a host PIN.
	// +optional
	// +kubebuilder:default=false
	AllowGuests bool `json:"allowGuests,omitempty"`

	// participantLimit caps the number of participants; unset means no limit.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	ParticipantLimit *int32 `json:"participantLimit,omitempty"`

	// pinSecretRef names a Secret in the same namespace with keys hostPin and
	// guestPin. When unset the operator generates the Secret <name>-pins. PINs
	// are 4 to 20 digits and appear nowhere else.
	// +optional
	PINSecretRef *LocalSecretReference `json:"pinSecretRef,omitempty"`

	// deletionPolicy is Delete (default: the backend room goes with the VMR) or
	// Retain (the backend room is left in place).
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// LocalSecretReference names a Secret in the same namespace.
type LocalSecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
}

// VMRStatus is what the operator observed of a VMR.
type VMRStatus struct {
	StatusBase `json:",inline"`

	// numericId is the number allocated to the room, given or generated.
	// +optional
	NumericID string `json:"numericId,omitempty"`
	// aliases are the aliases of spec.aliases the backend room has: a room
	// advertises only what dials it.
	// +optional
	// +listType=set
	Aliases []string `json:"aliases,omitempty"`
	// joinURL is the web address to join the room; empty while the room
	// cannot be joined.
	// +optional
	JoinURL string `json:"joinURL,omitempty"`
	// sipURI is the SIP address to dial the room; its user@domain part is an
	// alias of the backend room. Empty while it does not dial the room.
	// +optional
	SIPURI string `json:"sipURI,omitempty"`
	// pinSecretName is the Secret holding the room's PINs.
	// +optional
	PINSecretName string `json:"pinSecretName,omitempty"`
	// pinSecretResourceVersion is the resourceVersion of the PIN Secret whose
	// PINs the backend room was last found or made to have. A Secret changed
	// since (also while the operator was down) makes the next reconcile
	// apply its PINs. Only the version is kept: a hash of a 4-digit PIN
	// would give it away.
	// +optional
	PINSecretResourceVersion string `json:"pinSecretResourceVersion,omitempty"`
	// backendRef is the room's identifier in the backend, recorded right after
	// creation.
	// +optional
	BackendRef string `json:"backendRef,omitempty"`
}

// VMR is a permanent virtual meeting room provisioned for an entity.
//
// Its name labels the generated PIN Secret and names it <name>-pins, so it is
// at most 63 characters, as a label value must be.
//
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name must be at most 63 characters: the operator labels the room's PIN Secret with it"
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vmr,categories=visio
// +kubebuilder:printcolumn:name="Number",type=string,JSONPath=`.status.numericId`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Guests",type=boolean,JSONPath=`.spec.allowGuests`,priority=1
// +kubebuilder:printcolumn:name="Join",type=string,JSONPath=`.status.joinURL`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VMR struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the room.
	// +required
	Spec VMRSpec `json:"spec"`
	// status is what the operator observed.
	// Defaulted so that an object the operator has not reconciled yet reads as
	// in progress (observedGeneration 0 < generation) rather than done: kstatus,
	// and so Flux's health checks, take an object with no status as Current.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status VMRStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// VMRList is a list of VMRs.
type VMRList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VMR `json:"items"`
}
