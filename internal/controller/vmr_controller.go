package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/entityns"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/metrics"
)

// VMRReconciler provisions permanent virtual meeting rooms in the backend and
// keeps each one as its VMR declares: numeric id, aliases, PINs, guests and
// participant limit, while its owner holds a license.
//
// A room is created in the backend under a key derived from the VMR's UID, so
// a room whose creation was not recorded (crash, lost answer, stale cache) is
// found again by key instead of being created twice.
type VMRReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Backend  backend.Backend
	// NumericIDMin/Max bound the generated numeric ids (inclusive); the
	// --numeric-id-range flag checked them.
	NumericIDMin, NumericIDMax uint64
	JoinBaseURL                string        // e.g. "https://visio.example/join/" ; joinURL = JoinBaseURL + numericId
	SIPDomain                  string        // sipURI = "sip:" + numericId + "@" + SIPDomain
	DriftCheckInterval         time.Duration // how often a Ready room is compared with the backend (0 = never)
	BackendTimeout             time.Duration // per backend call
	MaxConcurrentReconciles    int

	// apiReader reads the Secrets named by spec.pinSecretRef: the cache holds
	// only the Secrets the operator creates.
	apiReader client.Reader
	clock     clock.PassiveClock
	numbers   *numberPool
	rooms     *roomTracker
	once      sync.Once
	setupErr  error
}

const (
	// pinSecretRecheck: a Secret named by spec.pinSecretRef is not watched
	// (it is not in the cache), so a room waiting for it looks again.
	pinSecretRecheck = time.Minute
	// backendConflictRecheck: a clash with a room the operator does not own is
	// resolved in the backend, which sends no event.
	backendConflictRecheck = 5 * time.Minute

	// vmrLabel marks the generated PIN Secret with the name of its room.
	vmrLabel = "tenancy.visio.dev/vmr"

	// reasonNumericIDsExhausted: every number of the configured range is taken.
	reasonNumericIDsExhausted = "NumericIDsExhausted"
)

// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=vmrs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=vmrs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=vmrs/finalizers,verbs=update
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=platformusers,verbs=get;list;watch
// The generated PIN Secrets are created, then only read (the garbage collector
// deletes them with their room); list and watch feed the cache, which holds
// only the Secrets the operator created.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one VMR and its backend room towards the spec.
func (r *VMRReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	if err := r.setup(); err != nil {
		return ctrl.Result{}, err
	}
	vmr := &v1.VMR{}
	if err := r.Get(ctx, req.NamespacedName, vmr); err != nil {
		if apierrors.IsNotFound(err) {
			r.rooms.forget(req.NamespacedName)
			metrics.ForgetRoom(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("cannot read room: %w", err)
	}
	orig := vmr.DeepCopy()
	metrics.RoomSeen(vmr, r.clock.Now())
	defer func() {
		if retErr != nil && !isTerminal(retErr) && !isBackendFailure(retErr) {
			setFailed(&vmr.Status.StatusBase, vmr.Generation, retErr)
		}
		if err := patchStatusIfChanged(ctx, r.Client, orig, vmr, &orig.Status, &vmr.Status); err != nil && retErr == nil {
			retErr = err
		} else if err == nil {
			metrics.RoomStatusWritten(r.Backend.Name(), orig, vmr, r.clock.Now())
		}
	}()
	// Events are sent on transitions only: a room stuck on the same problem
	// is retried without repeating the warning.
	prevReason := ""
	if c := findCondition(orig.Status.Conditions, v1.ReadyCondition); c != nil {
		prevReason = c.Reason
	}

	if !vmr.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, vmr, prevReason)
	}
	if vmr.Status.BackendRef == "" {
		// A room outside an entity namespace (admission was not called, or
		// the namespace is dressed up as an entity's) is never provisioned.
		// One already provisioned is left to its normal course: stalling it
		// here could orphan its backend room.
		e, _, err := entityns.Of(ctx, r.Client, vmr.Namespace)
		if err != nil {
			return ctrl.Result{}, err
		}
		if e == nil {
			return r.stall(vmr, prevReason, &roomBlock{reason: v1.ReasonNotInEntityNamespace, action: "Provision",
				message: fmt.Sprintf("namespace %q belongs to no entity: rooms are provisioned in an entity's namespace only (kubectl get entities)", vmr.Namespace),
				recheck: time.Minute}), nil
		}
	}
	if controllerutil.AddFinalizer(vmr, v1.VMRFinalizer) {
		// The finalizer must be stored before the room exists in the backend,
		// or a deletion racing with creation could leave the room behind.
		if err := r.Update(ctx, vmr); err != nil {
			return ctrl.Result{}, fmt.Errorf("cannot add finalizer: %w", err)
		}
		orig.ObjectMeta = *vmr.ObjectMeta.DeepCopy()
	}

	numericID, st, err := r.numericID(ctx, vmr)
	if err != nil {
		return ctrl.Result{}, err
	}
	if st != nil {
		return r.stall(vmr, prevReason, st), nil
	}
	r.setAddresses(vmr, numericID)

	if st, err := r.dialConflict(ctx, vmr, numericID); err != nil || st != nil {
		if err != nil {
			return ctrl.Result{}, err
		}
		return r.stall(vmr, prevReason, st), nil
	}
	if st, err := r.checkOwner(ctx, vmr); err != nil || st != nil {
		if err != nil {
			return ctrl.Result{}, err
		}
		return r.stall(vmr, prevReason, st), nil
	}
	p, st, err := r.roomPINs(ctx, vmr)
	if err != nil {
		return ctrl.Result{}, err
	}
	if st != nil {
		vmr.Status.PINSecretName = ""
		return r.stall(vmr, prevReason, st), nil
	}
	vmr.Status.PINSecretName = p.secret

	return r.syncBackend(ctx, vmr, orig, prevReason, desiredRoom(vmr, numericID, p))
}

// syncBackend makes the backend room match want. A recorded room is read
// and repaired only when that is due (spec or PINs changed, drift check);
// a room without a recorded reference, or gone from the backend, is
// provisioned.
func (r *VMRReconciler) syncBackend(ctx context.Context, vmr, orig *v1.VMR, prevReason string, want backend.Room) (ctrl.Result, error) {
	now := r.clock.Now()
	fp := fingerprintRoom(want)
	ref := vmr.Status.BackendRef
	if ref == "" {
		return r.provision(ctx, vmr, orig, prevReason, want, fp, now)
	}
	if !r.checkDue(vmr, fp, now) {
		return r.ready(vmr, want), nil
	}
	have, err := r.backendGet(ctx, ref)
	switch {
	case errors.Is(err, backend.ErrNotFound):
		log.FromContext(ctx).Info("Room is missing from the backend; creating it again", "backendRef", ref)
		r.Recorder.Eventf(vmr, nil, corev1.EventTypeWarning, "RoomMissing", "Provision",
			"Room %s was removed from %s outside the operator; creating it again", ref, r.Backend.Name())
		// A reference to nothing is dropped, so that a failed re-creation
		// is retried without reading it again.
		vmr.Status.BackendRef = ""
		return r.provision(ctx, vmr, orig, prevReason, want, fp, now)
	case err != nil:
		return r.backendFailed(vmr, prevReason, "read room "+ref, err, want)
	}
	return r.repair(ctx, vmr, prevReason, ref, have, want, fp, now)
}

// provision creates the room, or lets the backend find and complete the one
// an earlier pass created without recording it (Create looks the key up
// first), and records its reference at once.
func (r *VMRReconciler) provision(ctx context.Context, vmr, orig *v1.VMR, prevReason string, want backend.Room,
	fp roomFingerprint, now time.Time) (ctrl.Result, error) {
	ref, err := r.backendCreate(ctx, want)
	if ref != "" {
		// Recorded before anything else, so that no later failure can lose
		// it; were this write to fail, the next pass finds the room by key.
		if rerr := r.recordBackendRef(ctx, vmr, orig, ref); rerr != nil {
			return ctrl.Result{}, fmt.Errorf("cannot record the reference of room %s provisioned in %s (it will be found by key): %w",
				ref, r.Backend.Name(), rerr)
		}
	}
	switch {
	case errors.Is(err, backend.ErrConflict):
		return r.stall(vmr, prevReason, backendConflict(r.Backend.Name(), err, want)), nil
	case err != nil:
		return r.backendFailed(vmr, prevReason, "create room", err, want)
	}
	log.FromContext(ctx).Info("Provisioned room in the backend", "backendRef", ref, "numericId", want.NumericID)
	r.Recorder.Eventf(vmr, nil, corev1.EventTypeNormal, v1.ReasonProvisioned, "Provision",
		"Provisioned room %s in %s", want.NumericID, r.Backend.Name())
	r.rooms.checked(client.ObjectKeyFromObject(vmr), vmr.UID, fp, now)
	return r.ready(vmr, want), nil
}

// repair compares the room read from the backend with want and updates the
// fields that differ. A nil room means the backend keeps nothing to compare
// (embedded).
func (r *VMRReconciler) repair(ctx context.Context, vmr *v1.VMR, prevReason, ref string, have *backend.Room, want backend.Room,
	fp roomFingerprint, now time.Time) (ctrl.Result, error) {
	if diff := roomDiffOrNone(want, have); len(diff) > 0 {
		log.FromContext(ctx).Info("Updating room in the backend", "backendRef", ref, "fields", diff)
		err := r.backendUpdate(ctx, ref, want)
		switch {
		case errors.Is(err, backend.ErrConflict):
			return r.stall(vmr, prevReason, backendConflict(r.Backend.Name(), err, want)), nil
		case errors.Is(err, backend.ErrNotFound):
			// Gone since it was read: the next pass creates it again.
			vmr.Status.BackendRef = ""
			return r.backendFailed(vmr, prevReason, "update room "+ref, err, want)
		case err != nil:
			return r.backendFailed(vmr, prevReason, "update room "+ref, err, want)
		}
		r.Recorder.Eventf(vmr, nil, corev1.EventTypeNormal, "Updated", "Update",
			"Updated room %s in %s: %s differed", want.NumericID, r.Backend.Name(), joinFieldNames(diff))
	}
	r.rooms.checked(client.ObjectKeyFromObject(vmr), vmr.UID, fp, now)
	return r.ready(vmr, want), nil
}

// checkDue reports whether the backend room must be read and compared with
// want. This process's own record comes first: a room it left matching fp is
// compared again only when the drift check is due, whatever a status read
// from a lagging cache says. A room it does not know (after a start, or a
// pass that did not end Ready) is compared unless its status says it was
// left provisioned for this generation; then it is taken to match and its
// first drift check is spread over the interval.
func (r *VMRReconciler) checkDue(vmr *v1.VMR, fp roomFingerprint, now time.Time) bool {
	nn := client.ObjectKeyFromObject(vmr)
	if due, known := r.rooms.due(nn, vmr.UID, fp, now, r.DriftCheckInterval); known {
		return due
	}
	if vmr.Generation != vmr.Status.ObservedGeneration {
		return true
	}
	c := findCondition(vmr.Status.Conditions, v1.ProvisionedCondition)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != vmr.Generation {
		return true
	}
	r.rooms.seed(nn, vmr.UID, fp, now, r.DriftCheckInterval)
	return false
}

// recordBackendRef writes the status as it stands with ref, in a write of its
// own, and makes it the base of the pass's final status write.
//
// Unlike the final write it carries no resourceVersion and reports every
// failure: it must land even when the cache is behind (only this controller
// writes a VMR's status, one pass at a time), and a pass that could not record
// the reference must not go on as if it had.
func (r *VMRReconciler) recordBackendRef(ctx context.Context, vmr, orig *v1.VMR, ref string) error {
	vmr.Status.BackendRef = ref
	if equality.Semantic.DeepEqual(&orig.Status, &vmr.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, vmr, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("cannot write status: %w", err)
	}
	vmr.DeepCopyInto(orig)
	return nil
}

// reconcileDelete removes the backend room (unless it is retained), then lets
// the VMR go. The generated PIN Secret is removed by the garbage collector.
func (r *VMRReconciler) reconcileDelete(ctx context.Context, vmr *v1.VMR, prevReason string) (ctrl.Result, error) {
	nn := client.ObjectKeyFromObject(vmr)
	if !controllerutil.ContainsFinalizer(vmr, v1.VMRFinalizer) {
		r.forget(nn, vmr.UID)
		return ctrl.Result{}, nil
	}
	ref := vmr.Status.BackendRef
	if vmr.Spec.DeletionPolicy == v1.DeletionPolicyRetain {
		if ref != "" {
			r.Recorder.Eventf(vmr, nil, corev1.EventTypeNormal, "Retained", "Delete",
				"Left room %s in %s (deletionPolicy Retain)", ref, r.Backend.Name())
		}
	} else {
		if ref == "" {
			// A room created just before a crash has no recorded reference.
			found, _, err := r.backendFind(ctx, roomKey(vmr))
			switch {
			case err == nil:
				ref = found
			case !errors.Is(err, backend.ErrNotFound):
				return r.backendFailed(vmr, prevReason, "look up room", err, backend.Room{})
			}
		}
		if ref != "" {
			if err := r.backendDelete(ctx, ref); err != nil && !errors.Is(err, backend.ErrNotFound) {
				return r.backendFailed(vmr, prevReason, "delete room "+ref, err, backend.Room{})
			}
			log.FromContext(ctx).Info("Deleted room from the backend", "backendRef", ref)
			r.Recorder.Eventf(vmr, nil, corev1.EventTypeNormal, "Deleted", "Delete",
				"Deleted room %s from %s", ref, r.Backend.Name())
		}
	}
	controllerutil.RemoveFinalizer(vmr, v1.VMRFinalizer)
	if err := r.Update(ctx, vmr); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("cannot remove finalizer: %w", err)
	}
	r.forget(nn, vmr.UID)
	return ctrl.Result{}, nil
}

func (r *VMRReconciler) forget(nn types.NamespacedName, uid types.UID) {
	r.rooms.forget(nn)
	r.numbers.release(uid)
}

// checkOwner returns a stall when the room's owner is missing, inactive or
// unlicensed.
func (r *VMRReconciler) checkOwner(ctx context.Context, vmr *v1.VMR) (*roomBlock, error) {
	name := vmr.Spec.Owner
	if name == "" {
		return nil, nil
	}
	u := &v1.PlatformUser{}
	err := r.Get(ctx, client.ObjectKey{Namespace: vmr.Namespace, Name: name}, u)
	var msg string
	switch {
	case apierrors.IsNotFound(err):
		msg = fmt.Sprintf("owner %q does not exist in namespace %q", name, vmr.Namespace)
	case err != nil:
		return nil, fmt.Errorf("cannot read owner %q: %w", name, err)
	case !u.DeletionTimestamp.IsZero():
		msg = fmt.Sprintf("owner %q is being deleted", name)
	case !u.IsActive():
		msg = fmt.Sprintf("owner %q is deactivated", name)
	case !isConditionTrue(u.Status.Conditions, v1.LicensedCondition):
		msg = fmt.Sprintf("owner %q holds no license", name)
		if c := findCondition(u.Status.Conditions, v1.LicensedCondition); c != nil && c.Reason != "" {
			msg += " (" + c.Reason + ")"
		}
	default:
		return nil, nil
	}
	if vmr.Status.BackendRef != "" {
		msg += "; the room is kept in the backend but not updated"
	}
	return &roomBlock{reason: v1.ReasonOwnerNotLicensed, action: "CheckOwner", message: msg}, nil
}

// numericID is the number the room is dialled by: the given one, the one
// already allocated, or a newly picked free one. It returns a stall when the
// range is exhausted.
func (r *VMRReconciler) numericID(ctx context.Context, vmr *v1.VMR) (string, *roomBlock, error) {
	if vmr.Spec.NumericID != "" {
		return vmr.Spec.NumericID, nil, nil
	}
	if cur := vmr.Status.NumericID; cur != "" {
		if vmr.Status.BackendRef != "" {
			return cur, nil, nil
		}
		// Not provisioned yet, so nobody dials it: a number an earlier room
		// turned out to claim too is exchanged for a free one rather than
		// stalling the room.
		other, err := r.earlierClaimant(ctx, vmr, cur)
		if err != nil {
			return "", nil, err
		}
		if other == nil {
			return cur, nil, nil
		}
		log.FromContext(ctx).Info("Generated numeric id is claimed by an earlier room; picking another",
			"numericId", cur, "claimedBy", client.ObjectKeyFromObject(other))
	}
	taken := func(s string) (bool, error) {
		if slices.Contains(vmr.Spec.Aliases, s) {
			return true, nil
		}
		others, err := r.otherClaimants(ctx, vmr, s)
		return len(others) > 0, err
	}
	claimed := func() (map[string]bool, error) {
		all := &v1.VMRList{}
		if err := r.List(ctx, all); err != nil {
			return nil, fmt.Errorf("cannot list rooms: %w", err)
		}
		set := map[string]bool{}
		for i := range all.Items {
			if all.Items[i].UID == vmr.UID {
				continue
			}
			for _, s := range index.DialStrings(&all.Items[i]) {
				set[s] = true
			}
		}
		for _, a := range vmr.Spec.Aliases {
			set[a] = true
		}
		return set, nil
	}
	n, err := r.numbers.pick(r.NumericIDMin, r.NumericIDMax, vmr.UID, r.clock.Now(), taken, claimed)
	if errors.Is(err, errNumbersExhausted) {
		return "", &roomBlock{reason: reasonNumericIDsExhausted, action: "AllocateNumericID",
			message: fmt.Sprintf("every numeric id from %d to %d is taken; set spec.numericId or widen the operator's range",
				r.NumericIDMin, r.NumericIDMax)}, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("cannot pick a numeric id: %w", err)
	}
	return n, nil, nil
}

// dialConflict returns a stall when another VMR, created before this one,
// claims its numeric id or one of its aliases. The earlier VMR keeps the value.
func (r *VMRReconciler) dialConflict(ctx context.Context, vmr *v1.VMR, numericID string) (*roomBlock, error) {
	check := func(what, value string) (*roomBlock, error) {
		other, err := r.earlierClaimant(ctx, vmr, value)
		if other == nil || err != nil {
			return nil, err
		}
		return &roomBlock{reason: v1.ReasonAliasConflict, action: "Claim", message: fmt.Sprintf(
			"%s %q is already used by VMR %s/%s, created earlier; choose another", what, value, other.Namespace, other.Name)}, nil
	}
	if st, err := check("numeric id", numericID); st != nil || err != nil {
		return st, err
	}
	for _, a := range sortedAliases(vmr.Spec.Aliases) {
		if st, err := check("alias", a); st != nil || err != nil {
			return st, err
		}
	}
	return nil, nil
}

// earlierClaimant returns the earliest VMR other than vmr that claims value and
// was created before vmr, or nil.
func (r *VMRReconciler) earlierClaimant(ctx context.Context, vmr *v1.VMR, value string) (*v1.VMR, error) {
	others, err := r.otherClaimants(ctx, vmr, value)
	if err != nil {
		return nil, err
	}
	var first *v1.VMR
	for i := range others {
		if o := &others[i]; createdBefore(o, vmr) && (first == nil || createdBefore(o, first)) {
			first = o
		}
	}
	return first, nil
}

// otherClaimants lists, from the cache, the VMRs other than vmr that claim
// value as numeric id or alias, anywhere on the platform.
func (r *VMRReconciler) otherClaimants(ctx context.Context, vmr *v1.VMR, value string) ([]v1.VMR, error) {
	list := &v1.VMRList{}
	if err := r.List(ctx, list, client.MatchingFields{index.VMRDialString: value}); err != nil {
		return nil, fmt.Errorf("cannot look up rooms dialled by %q: %w", value, err)
	}
	out := list.Items[:0]
	for _, o := range list.Items {
		if o.UID != vmr.UID && (o.Namespace != vmr.Namespace || o.Name != vmr.Name) {
			out = append(out, o)
		}
	}
	return out, nil
}

// createdBefore orders VMRs by creation time, then by namespace/name, so that
// exactly one of two claimants of a value is the earlier one.
func createdBefore(a, b *v1.VMR) bool {
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// setup prepares the reconciler's own state, once. Its settings come checked
// from operator.Options; setup only refuses a reconciler built without them.
func (r *VMRReconciler) setup() error {
	r.once.Do(func() {
		if r.clock == nil {
			r.clock = clock.RealClock{}
		}
		if r.numbers == nil {
			r.numbers = newNumberPool()
		}
		if r.rooms == nil {
			r.rooms = newRoomTracker()
		}
		switch {
		case r.Backend == nil:
			r.setupErr = errors.New("the VMR controller needs a backend")
		case r.NumericIDMin == 0 || r.NumericIDMin > r.NumericIDMax:
			r.setupErr = fmt.Errorf("the VMR controller needs a numeric id range, got %d-%d", r.NumericIDMin, r.NumericIDMax)
		case r.BackendTimeout <= 0:
			r.setupErr = errors.New("the VMR controller needs a backend timeout")
		}
	})
	return r.setupErr
}

// reader reads objects the cache does not hold.
func (r *VMRReconciler) reader() client.Reader {
	if r.apiReader != nil {
		return r.apiReader
	}
	return r.Client
}

// SetupWithManager registers the controller: VMRs, the PIN Secrets they own,
// the owners they follow, and the other VMRs they share a dial string with (so
// that the later of two claimants proceeds once the earlier lets go).
func (r *VMRReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.apiReader = mgr.GetAPIReader()
	if err := r.setup(); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.VMR{}).
		Owns(&corev1.Secret{}).
		Watches(&v1.PlatformUser{}, handler.EnqueueRequestsFromMapFunc(r.roomsOfOwner),
			builder.WithPredicates(ownerStateChanged)).
		Watches(&v1.VMR{}, handler.EnqueueRequestsFromMapFunc(r.roomsSharingDialStrings),
			builder.WithPredicates(dialStringsChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("vmr").
		Complete(r)
}

// roomsOfOwner maps a PlatformUser to the rooms it owns.
func (r *VMRReconciler) roomsOfOwner(ctx context.Context, o client.Object) []reconcile.Request {
	list := &v1.VMRList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index.VMROwner: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "Cannot list the rooms of an owner", "owner", client.ObjectKeyFromObject(o))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// roomsSharingDialStrings maps a VMR to the other VMRs claiming one of its
// numeric ids or aliases. Updates map both the old and the new object, so a
// value let go wakes the rooms waiting for it.
func (r *VMRReconciler) roomsSharingDialStrings(ctx context.Context, o client.Object) []reconcile.Request {
	vmr, ok := o.(*v1.VMR)
	if !ok {
		return nil
	}
	self := client.ObjectKeyFromObject(vmr)
	seen := map[types.NamespacedName]bool{}
	var reqs []reconcile.Request
	for _, s := range index.DialStrings(vmr) {
		list := &v1.VMRList{}
		if err := r.List(ctx, list, client.MatchingFields{index.VMRDialString: s}); err != nil {
			log.FromContext(ctx).Error(err, "Cannot list the rooms sharing a dial string", "vmr", self)
			return reqs
		}
		for i := range list.Items {
			key := client.ObjectKeyFromObject(&list.Items[i])
			if key != self && !seen[key] {
				seen[key] = true
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
		}
	}
	return reqs
}

// ownerStateChanged passes the owner changes a room depends on.
var ownerStateChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*v1.PlatformUser)
		n, ok2 := e.ObjectNew.(*v1.PlatformUser)
		if !ok1 || !ok2 {
			return true
		}
		licensed := func(u *v1.PlatformUser) string {
			if c := findCondition(u.Status.Conditions, v1.LicensedCondition); c != nil {
				return string(c.Status) + "/" + c.Reason
			}
			return ""
		}
		return o.IsActive() != n.IsActive() || licensed(o) != licensed(n) ||
			o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}

// dialStringsChanged passes the VMR changes that can start or end a claim.
var dialStringsChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*v1.VMR)
		n, ok2 := e.ObjectNew.(*v1.VMR)
		if !ok1 || !ok2 {
			return true
		}
		return !slices.Equal(index.DialStrings(o), index.DialStrings(n)) ||
			o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}
