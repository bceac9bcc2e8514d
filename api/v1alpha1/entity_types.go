package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// EntitySpec declares a member organisation of the platform.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.__namespace__) || has(self.__namespace__)",message="namespace cannot be removed once set",fieldPath=".namespace"
// +kubebuilder:validation:XValidation:rule="has(self.parent) == has(oldSelf.parent)",message="parent is set when the entity is created and never added or removed later: an entity's place in the hierarchy is fixed for its whole life (its administrators' rights and its parent's delegations depend on it); to place an organisation under another, create a new Entity with spec.parent",fieldPath=".parent"
type EntitySpec struct {
	// displayName is the organisation's name as people read it, e.g. "Commune de Rennes".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	DisplayName string `json:"displayName"`

	// namespace is the Kubernetes namespace that holds the entity's users, license
	// pools and rooms. It defaults to "entity-<name>" and cannot change once set.
	// The operator creates it and never adopts a namespace it did not create.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="namespace is immutable once set"
	Namespace string `json:"namespace,omitempty"`

	// contact is how the platform reaches the organisation.
	// +optional
	Contact *Contact `json:"contact,omitempty"`

	// parent makes this entity a sub-entity of another: the name of an Entity
	// that has no parent itself (one level only) and is not the platform
	// entity. The parent's Administrators administer this entity as its own
	// Administrators do. It is set at creation and never changes, nor can it
	// be added or removed later. An entity whose parent does not exist, has a
	// parent of its own or is the platform entity stays out of the hierarchy
	// (Stalled, reason ParentNotFound or NestingTooDeep).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=56
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="parent is immutable: an entity never moves to another parent"
	Parent string `json:"parent,omitempty"`

	// deletionProtection, true by default, refuses to delete the Entity while it
	// still has PlatformUsers or VMRs, or sub-entities that name it as their
	// parent. Set it to false to delete the entity and everything in its
	// namespace (its sub-entities stay, out of the hierarchy).
	// +optional
	// +kubebuilder:default=true
	DeletionProtection *bool `json:"deletionProtection,omitempty"`
}

// Contact is a way to reach an organisation.
// +kubebuilder:validation:XValidation:rule="has(self.email) || has(self.phone)",message="contact needs an email or a phone"
type Contact struct {
	// email is the organisation's contact address.
	// +optional
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\s]+@[^@\s]+\.[^@\s]+$`
	Email string `json:"email,omitempty"`
	// phone is the organisation's contact number in E.164 form, e.g. "+33299000000".
	// +optional
	// +kubebuilder:validation:Pattern=`^\+[1-9][0-9]{6,14}$`
	Phone string `json:"phone,omitempty"`
}

// UserCounts summarises an entity's PlatformUsers.
type UserCounts struct {
	// total is the number of PlatformUsers in the entity.
	// +optional
	Total int32 `json:"total"`
	// active is the number of active users.
	// +optional
	Active int32 `json:"active"`
	// licensed is the number of users holding a license.
	// +optional
	Licensed int32 `json:"licensed"`
	// byRole counts users per role (User, DelegatedOrganizer, Administrator, Concierge).
	// +optional
	ByRole map[PlatformUserRole]int32 `json:"byRole,omitempty"`
}

// VMRCounts summarises an entity's rooms.
type VMRCounts struct {
	// total is the number of VMRs in the entity.
	// +optional
	Total int32 `json:"total"`
	// ready is the number of VMRs that are Ready.
	// +optional
	Ready int32 `json:"ready"`
}

// EntityStatus is what the operator observed of an Entity.
type EntityStatus struct {
	StatusBase `json:",inline"`

	// namespace is the namespace the entity uses.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// licenses sums the licenses of all the entity's pools.
	// +optional
	Licenses LicenseCounts `json:"licenses,omitzero"`
	// users counts the entity's PlatformUsers.
	// +optional
	Users UserCounts `json:"users,omitzero"`
	// vmrs counts the entity's rooms.
	// +optional
	VMRs VMRCounts `json:"vmrs,omitzero"`
	// children are the names, sorted, of the sub-entities in this entity's
	// hierarchy: the Entities whose spec.parent names it, when this entity can
	// be a parent (it has no parent and is not the platform entity).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=63
	Children []string `json:"children,omitempty"`
	// subtree sums this entity's own licenses, users and rooms with those of
	// its children, as each child last reported them: how the whole
	// organisation is doing. Set on a parent only (an entity with children).
	// +optional
	Subtree *EntityCounts `json:"subtree,omitempty"`
}

// EntityCounts are the license, user and room counts of one entity or of a
// whole hierarchy.
type EntityCounts struct {
	// licenses sums the licenses of the pools.
	// +optional
	Licenses LicenseCounts `json:"licenses,omitzero"`
	// users counts the PlatformUsers.
	// +optional
	Users UserCounts `json:"users,omitzero"`
	// vmrs counts the rooms.
	// +optional
	VMRs VMRCounts `json:"vmrs,omitzero"`
}

// Entity is a member organisation of the platform: its namespace holds its
// license pools, users and rooms, and its administrators manage its users.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ent,categories=visio
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 56",message="metadata.name: entity names are at most 56 characters, so that the default namespace entity-<name> is a valid name"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name: an entity name is a DNS label (lower-case letters, digits and '-', no '.'), so that it can name its namespace entity-<name>"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.__namespace__) || !has(self.status) || !has(self.status.__namespace__) || self.spec.__namespace__ == self.status.__namespace__",message="namespace must stay the namespace already in use (status.namespace)",fieldPath=".spec.namespace"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.parent) || self.spec.parent != self.metadata.name",message="an entity cannot be its own parent",fieldPath=".spec.parent"
// +kubebuilder:selectablefield:JSONPath=`.spec.parent`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.status.namespace`
// +kubebuilder:printcolumn:name="Parent",type=string,JSONPath=`.spec.parent`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.licenses.used`,description="Licenses held"
// +kubebuilder:printcolumn:name="Capacity",type=integer,JSONPath=`.status.licenses.capacity`,description="Licenses allocated"
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.licenses.pending`,priority=1
// +kubebuilder:printcolumn:name="Users",type=integer,JSONPath=`.status.users.total`
// +kubebuilder:printcolumn:name="VMRs",type=integer,JSONPath=`.status.vmrs.total`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Entity struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the organisation.
	// +required
	Spec EntitySpec `json:"spec"`
	// status is what the operator observed.
	// Defaulted so that an object the operator has not reconciled yet reads as
	// in progress (observedGeneration 0 < generation) rather than done: kstatus,
	// and so Flux's health checks, take an object with no status as Current.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status EntityStatus `json:"status,omitzero"`
}

// NamespaceName is the namespace the entity uses: spec.namespace, else entity-<name>.
func (e *Entity) NamespaceName() string {
	if e.Spec.Namespace != "" {
		return e.Spec.Namespace
	}
	return "entity-" + e.Name
}

// ParentFieldSelector is the field selector that lists an Entity's
// sub-entities from the API server (a selectable field of the CRD), and the
// name of the cache index that does the same (internal/index).
const ParentFieldSelector = "spec.parent"

// DeletionProtected reports whether deleting the entity must be refused while it
// still has users or rooms.
func (e *Entity) DeletionProtected() bool {
	return e.Spec.DeletionProtection == nil || *e.Spec.DeletionProtection
}

// +kubebuilder:object:root=true

// EntityList is a list of Entities.
type EntityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Entity `json:"items"`
}
