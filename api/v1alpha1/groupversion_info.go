// Package v1alpha1 holds the tenancy.visio.dev/v1alpha1 API: Entities, their
// LicensePools, PlatformUsers and permanent virtual meeting rooms (VMRs).
//
// +kubebuilder:object:generate=true
// +groupName=tenancy.visio.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "tenancy.visio.dev", Version: "v1alpha1"}

	// SchemeBuilder adds the kinds of this group-version to a scheme. It uses
	// apimachinery alone, so that clients importing the API pull in nothing of
	// the operator's dependencies.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Entity{}, &EntityList{},
		&LicensePool{}, &LicensePoolList{},
		&LicenseRequest{}, &LicenseRequestList{},
		&PlatformUser{}, &PlatformUserList{},
		&VMR{}, &VMRList{},
		&DialStringClaim{}, &DialStringClaimList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
