package v1alpha1

// Condition types. Every kind reports Ready, Reconciling and Stalled in the
// kstatus convention, so Flux, Argo CD, Helm --wait and `kubectl wait` understand
// them without configuration; some kinds add their own.
const (
	// ReadyCondition is True when the object is in the state its spec asks for.
	ReadyCondition = "Ready"
	// ReconcilingCondition is True while the operator is working towards the spec.
	// It is removed when the object is Ready or Stalled.
	ReconcilingCondition = "Reconciling"
	// StalledCondition is True when progress needs a human: an invalid spec, a
	// conflict, an exhausted license pool. It is removed once resolved.
	StalledCondition = "Stalled"

	// LicensedCondition (PlatformUser) is True while the user holds a named license.
	LicensedCondition = "Licensed"
	// ApprovedCondition (LicenseRequest) is True once the platform approved the
	// request, False once it denied it, Unknown while it waits.
	ApprovedCondition = "Approved"
	// ProvisionedCondition (VMR) is True once the room exists in the backend and
	// matches the spec.
	ProvisionedCondition = "Provisioned"
)

// Condition reasons, shared by all kinds. A reason is a CamelCase word that
// tools and people can match on; the message says the rest.
const (
	// ReasonReconciled: the object matches its spec.
	ReasonReconciled = "Reconciled"
	// ReasonProgressing: the operator is working on the object.
	ReasonProgressing = "Progressing"
	// ReasonReconcileFailed: a transient error; the operator retries with backoff.
	ReasonReconcileFailed = "ReconcileFailed"

	// ReasonNamespaceConflict (Entity): the entity's namespace exists and was not
	// created for this entity; it is never adopted.
	ReasonNamespaceConflict = "NamespaceConflict"
	// ReasonNamespaceTerminating (Entity): the namespace is being deleted.
	ReasonNamespaceTerminating = "NamespaceTerminating"
	// ReasonDeletionProtected (Entity): the Entity is being deleted but is
	// protected and still has users or rooms; it waits until they are gone or
	// spec.deletionProtection is set to false.
	ReasonDeletionProtected = "DeletionProtected"
	// ReasonNestingTooDeep (Entity): spec.parent names an Entity that cannot be
	// a parent (it has a parent itself, or it is the platform entity), or this
	// entity is the platform entity; the entity is kept out of the hierarchy
	// (its parent's Administrators get nothing in it, it is not counted in
	// the parent's subtree). Admission refuses this where it runs.
	ReasonNestingTooDeep = "NestingTooDeep"
	// ReasonParentNotFound (Entity): spec.parent names an Entity that does not
	// exist; the entity stays out of the hierarchy until it does.
	ReasonParentNotFound = "ParentNotFound"

	// ReasonDelegationInvalid (LicensePool): an entry of spec.delegations names
	// an entity that is not a sub-entity of the pool's entity, or a pool that
	// does not exist; it counts on neither side until fixed.
	ReasonDelegationInvalid = "DelegationInvalid"

	// ReasonLicensed (PlatformUser): active and holding a license.
	ReasonLicensed = "Licensed"
	// ReasonDeactivated (PlatformUser): inactive; holds no license by design.
	ReasonDeactivated = "Deactivated"
	// ReasonLicensePoolExhausted (PlatformUser, LicensePool): no free license;
	// the user waits in the pool's queue.
	ReasonLicensePoolExhausted = "LicensePoolExhausted"
	// ReasonLicensePoolNotFound (PlatformUser): the named pool does not exist.
	ReasonLicensePoolNotFound = "LicensePoolNotFound"
	// ReasonConciergeOutsidePlatform (PlatformUser): the user carries the
	// Concierge role outside the platform entity; it gets no Concierge right
	// and no capability beyond an Administrator's.
	ReasonConciergeOutsidePlatform = "ConciergeOutsidePlatform"
	// ReasonEmailConflict (PlatformUser): another user of the entity, created
	// first, has the same email; this one is bound to nothing.
	ReasonEmailConflict = "EmailConflict"
	// ReasonLicenseRevoked (PlatformUser): the pool shrank and this user, among the
	// most recently licensed, lost its license.
	ReasonLicenseRevoked = "LicenseRevoked"

	// ReasonAwaitingDecision (LicenseRequest): no Concierge or platform
	// administrator has decided yet.
	ReasonAwaitingDecision = "AwaitingDecision"
	// ReasonGranted (LicenseRequest): approved, unexpired and counted in its pool.
	ReasonGranted = "Granted"
	// ReasonDenied (LicenseRequest): the platform refused the request.
	ReasonDenied = "Denied"
	// ReasonExpired (LicenseRequest): the approval's duration is over; the
	// licenses no longer count.
	ReasonExpired = "Expired"
	// Reasons of LicenseRequest events: each step of a request, in its entity
	// namespace, so that kubectl get events tells the story.

	// ReasonLicensesRequested (LicenseRequest event): the request was seen first.
	ReasonLicensesRequested = "LicensesRequested"
	// ReasonLicensesGranted (LicenseRequest event): the approval counts in the pool.
	ReasonLicensesGranted = "LicensesGranted"
	// ReasonLicensesDenied (LicenseRequest event): the request was denied.
	ReasonLicensesDenied = "LicensesDenied"
	// ReasonLicensesExpired (LicenseRequest event): the approval's licenses stopped counting.
	ReasonLicensesExpired = "LicensesExpired"

	// ReasonProvisioned (VMR): the room exists in the backend and matches the spec.
	ReasonProvisioned = "Provisioned"
	// ReasonBackendConflict (VMR): a room with the same name or alias exists in the
	// backend and was not created by the operator, or the room recorded in
	// status.backendRef now carries another key; it is never adopted, changed
	// or deleted.
	ReasonBackendConflict = "BackendConflict"
	// ReasonBackendError (VMR): the backend failed; the operator retries.
	ReasonBackendError = "BackendError"
	// ReasonAliasConflict (VMR): another VMR holds this numeric id or alias
	// (its DialStringClaim exists).
	ReasonAliasConflict = "AliasConflict"
	// ReasonNumericIDsExhausted (VMR): every number of the configured range is taken.
	ReasonNumericIDsExhausted = "NumericIDsExhausted"
	// ReasonOwnerNotLicensed (VMR): the owner is missing, inactive or unlicensed.
	ReasonOwnerNotLicensed = "OwnerNotLicensed"
	// ReasonInvalidPINs (VMR): the PIN Secret is missing or breaks the PIN rules.
	ReasonInvalidPINs = "InvalidPINs"
	// Reasons of VMR events that record an action rather than a condition.

	// ReasonRoomMissing (VMR event): the backend room was removed outside the
	// operator and is created again.
	ReasonRoomMissing = "RoomMissing"
	// ReasonUpdated (VMR event): the backend room was changed to match the spec.
	ReasonUpdated = "Updated"
	// ReasonDeleted (VMR event): the backend room was removed with its VMR.
	ReasonDeleted = "Deleted"
	// ReasonRetained (VMR event): the backend room was left in place (deletionPolicy
	// Retain) and handed over: it no longer carries the operator's key.
	ReasonRetained = "Retained"
	// ReasonPINsGenerated (VMR event): the operator generated the room's PIN Secret.
	ReasonPINsGenerated = "PINsGenerated"

	// ReasonNotInEntityNamespace: the object lives in a namespace that belongs to no
	// Entity (possible only when admission webhooks were bypassed).
	ReasonNotInEntityNamespace = "NotInEntityNamespace"
)

// Labels and finalizers.
const (
	// EntityLabel marks a namespace (and objects the operator creates) with the
	// name of the Entity it belongs to.
	EntityLabel = "tenancy.visio.dev/entity"
	// ManagedByLabel marks objects the operator creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel on objects the operator creates.
	ManagedByValue = "visio-operator"

	// EntityFinalizer lets the Entity controller remove the entity namespace
	// before the Entity disappears.
	EntityFinalizer = "tenancy.visio.dev/entity"
	// LicenseRequestFinalizer lets the LicensePool controller take an approved
	// request's licenses out of its pool (revoking users first if need be)
	// before the request disappears. The pool controller adds it before it
	// first counts the request: a request without it never counts.
	LicenseRequestFinalizer = "tenancy.visio.dev/license-request"
	// VMRFinalizer lets the VMR controller remove the backend room and release
	// the room's DialStringClaims first.
	VMRFinalizer = "tenancy.visio.dev/vmr"

	// PINSecretLabel marks the Secrets that hold a room's PINs, generated or
	// named by spec.pinSecretRef: the operator caches and watches only those.
	PINSecretLabel = "tenancy.visio.dev/pin-secret"
	// VMRUIDLabel marks a DialStringClaim with the UID of the VMR holding it.
	VMRUIDLabel = "tenancy.visio.dev/vmr-uid"
)

// DefaultLicensePool is the pool used by a PlatformUser that names none.
const DefaultLicensePool = "default"
