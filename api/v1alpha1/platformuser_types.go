package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// PlatformUserRole is what a user may do on the platform. Roles are cumulative:
// each includes the capabilities of the ones before it.
// +kubebuilder:validation:Enum=User;DelegatedOrganizer;Administrator;Concierge
type PlatformUserRole string

const (
	// RoleUser schedules, records and streams meetings (needs a license).
	RoleUser PlatformUserRole = "User"
	// RoleDelegatedOrganizer also schedules meetings on behalf of the licensed
	// users of its own entity.
	RoleDelegatedOrganizer PlatformUserRole = "DelegatedOrganizer"
	// RoleAdministrator also manages the entity's users and sees its statistics;
	// administering needs no license.
	RoleAdministrator PlatformUserRole = "Administrator"
	// RoleConcierge is platform support staff: also manages permanent rooms and
	// sees every entity.
	RoleConcierge PlatformUserRole = "Concierge"
)

// Roles lists every role, from the least to the most privileged.
var Roles = []PlatformUserRole{RoleUser, RoleDelegatedOrganizer, RoleAdministrator, RoleConcierge}

// Capability is something a user can do, derived from its role and license.
type Capability string

// Capabilities, in the order of the role table.
const (
	CapabilityScheduleMeetings           Capability = "ScheduleMeetings"
	CapabilityManageContacts             Capability = "ManageContacts"
	CapabilityRecordMeetings             Capability = "RecordMeetings"
	CapabilityStreamMeetings             Capability = "StreamMeetings"
	CapabilityScheduleOnBehalfInEntity   Capability = "ScheduleOnBehalfInEntity"
	CapabilityManageEntityUsers          Capability = "ManageEntityUsers"
	CapabilityViewEntityStatistics       Capability = "ViewEntityStatistics"
	CapabilityRequestLicenses            Capability = "RequestLicenses"
	CapabilityManagePermanentVMRs        Capability = "ManagePermanentVMRs"
	CapabilityViewAllEntities            Capability = "ViewAllEntities"
	CapabilityViewAllStatistics          Capability = "ViewAllStatistics"
	CapabilityScheduleOnBehalfOnPlatform Capability = "ScheduleOnBehalfOnPlatform"
	CapabilityDecideLicenseRequests      Capability = "DecideLicenseRequests"
)

// PlatformUserSpec declares a person of an entity and what they may do.
type PlatformUserSpec struct {
	// email is the user's address: their login and the subject of the RBAC
	// bindings the operator generates. Unique within the entity. Written as
	// identity providers send it: lower case, Unicode NFC, with no space,
	// control or invisible character.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\sA-Z]+@[^@\sA-Z]+\.[^@\sA-Z]+$`
	// +kubebuilder:validation:XValidation:rule=`!self.matches(r'[\p{Z}\p{Cc}\p{Cf}\p{Co}\x{034F}\x{115F}\x{1160}\x{3164}\x{FFA0}\x{2800}]')`,message="email must not contain spaces, control or invisible characters (often pasted with the address)"
	// +kubebuilder:validation:XValidation:rule=`!self.matches(r'[\p{Lu}\p{Lt}]')`,message="email must be lower case, as identity providers send it"
	Email string `json:"email"`

	// givenName is the user's first name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	GivenName string `json:"givenName"`

	// familyName is the user's last name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	FamilyName string `json:"familyName"`

	// phone is the user's number in E.164 form, e.g. "+33612345678".
	// +optional
	// +kubebuilder:validation:Pattern=`^\+[1-9][0-9]{6,14}$`
	Phone string `json:"phone,omitempty"`

	// country is the ISO 3166-1 alpha-2 code of the user's country, upper case, e.g. "FR".
	// +optional
	// +kubebuilder:validation:Pattern=`^[A-Z]{2}$`
	Country string `json:"country,omitempty"`

	// postalCode is the user's postal code.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9 -]*$`
	PostalCode string `json:"postalCode,omitempty"`

	// timeZone is the user's IANA time zone, e.g. "Europe/Paris".
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`
	TimeZone string `json:"timeZone,omitempty"`

	// role is User (default), DelegatedOrganizer, Administrator or Concierge.
	// Only a Concierge or a platform administrator may grant Concierge.
	// +optional
	// +kubebuilder:default=User
	Role PlatformUserRole `json:"role,omitempty"`

	// active, true by default, means the user holds a named license. Deactivating
	// frees the license at once; an inactive Administrator keeps administering.
	// +optional
	// +kubebuilder:default=true
	Active *bool `json:"active,omitempty"`

	// licensePool names the LicensePool, in the same namespace, the user's license
	// comes from. Defaults to "default".
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	LicensePool string `json:"licensePool,omitempty"`
}

// PlatformUserStatus is what the operator observed of a PlatformUser.
type PlatformUserStatus struct {
	StatusBase `json:",inline"`

	// licensePool is the pool the user's license is held in, while licensed.
	// +optional
	LicensePool string `json:"licensePool,omitempty"`
	// licensedSince is when the user was granted the license it holds.
	// +optional
	LicensedSince *metav1.Time `json:"licensedSince,omitempty"`
	// capabilities are what the user can do now, from its role and license.
	// +optional
	// +listType=set
	Capabilities []Capability `json:"capabilities,omitempty"`
}

// PlatformUser is a person of an entity, with a role and, while active, a named license.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pu,categories=visio
// +kubebuilder:printcolumn:name="Email",type=string,JSONPath=`.spec.email`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Active",type=boolean,JSONPath=`.spec.active`
// +kubebuilder:printcolumn:name="Licensed",type=string,JSONPath=`.status.conditions[?(@.type=="Licensed")].status`
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.licensePool`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PlatformUser struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the user.
	// +required
	Spec PlatformUserSpec `json:"spec"`
	// status is what the operator observed.
	// Defaulted so that an object the operator has not reconciled yet reads as
	// in progress (observedGeneration 0 < generation) rather than done: kstatus,
	// and so Flux's health checks, take an object with no status as Current.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status PlatformUserStatus `json:"status,omitzero"`
}

// IsActive reports whether the user wants a license (spec.active, default true).
func (u *PlatformUser) IsActive() bool { return u.Spec.Active == nil || *u.Spec.Active }

// PoolName is the pool the user draws its license from.
func (u *PlatformUser) PoolName() string {
	if u.Spec.LicensePool == "" {
		return DefaultLicensePool
	}
	return u.Spec.LicensePool
}

// RoleOrDefault is the user's role, User when unset.
func (u *PlatformUser) RoleOrDefault() PlatformUserRole {
	if u.Spec.Role == "" {
		return RoleUser
	}
	return u.Spec.Role
}

// +kubebuilder:object:root=true

// PlatformUserList is a list of PlatformUsers.
type PlatformUserList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PlatformUser `json:"items"`
}

// WantsLicenseIn reports whether the user, as declared, wants a license of the
// named pool: it is active, names that pool, and is not being deleted.
func (u *PlatformUser) WantsLicenseIn(pool string) bool {
	return u.IsActive() && u.PoolName() == pool && u.DeletionTimestamp.IsZero()
}
