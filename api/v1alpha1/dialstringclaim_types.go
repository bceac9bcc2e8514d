package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DialStringClaimSpec names the dial string claimed and the room that holds it.
type DialStringClaimSpec struct {
	// dialString is the numeric id or alias claimed, exactly as dialled.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=250
	DialString string `json:"dialString"`
	// vmr is the room that holds the dial string.
	// +required
	VMR ClaimHolder `json:"vmr"`
}

// ClaimHolder identifies a VMR across its namespace, name and incarnation.
type ClaimHolder struct {
	// namespace of the VMR.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// name of the VMR.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// uid of the VMR: a VMR deleted and created again under the same name
	// is another holder.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`
}

// DialStringClaim records, for the whole platform, which VMR holds a numeric
// id or alias. The operator creates one before it provisions a room, under a
// name derived from the dial string, so that of two rooms asking for the same
// dial string at the same instant, on any replica, exactly one creates it
// (the API server refuses the second create). It is removed when its room
// goes or stops using the dial string. Written by the operator only; people
// read it to see who holds a number (`kubectl get dialstringclaims`).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=dsc,categories=visio
// +kubebuilder:printcolumn:name="Dial String",type=string,JSONPath=`.spec.dialString`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.vmr.namespace`
// +kubebuilder:printcolumn:name="VMR",type=string,JSONPath=`.spec.vmr.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.spec == oldSelf.spec",message="a claim is never handed over: delete it and create another"
type DialStringClaim struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the dial string and its holder.
	// +required
	Spec DialStringClaimSpec `json:"spec"`
}

// +kubebuilder:object:root=true

// DialStringClaimList is a list of DialStringClaims.
type DialStringClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DialStringClaim `json:"items"`
}
