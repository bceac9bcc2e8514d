package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"visio.dev/operator/internal/rooms"
)

// VMRReconciler provisions permanent virtual meeting rooms in the backend and
// keeps each one as its VMR declares: numeric id, aliases, PINs, guests and
// participant limit, while its owner holds a license.
//
// The pass is split the Cluster API way: this file holds the skeleton,
// vmr_phases.go the steps that talk to the world (numbers, claims, owner,
// PINs, backend), vmr_status.go the one function that turns what the pass
// saw into the status, and the events of its transitions.
//
// A room is created in the backend under a key derived from the VMR's UID, so
// a room whose creation was not recorded (crash, lost answer, stale cache) is
// found again by key instead of being created twice; every dial string is
// claimed in the API server (DialStringClaim) before the room is provisioned,
// so two rooms never hold one at the same instant, whatever the replica.
type VMRReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Backend  backend.Backend
	// NumericIDMin/Max bound the generated numeric ids (inclusive); the
	// --numeric-id-range flag checked them.
	NumericIDMin, NumericIDMax uint64
	JoinBaseURL                string        // e.g. "https://visio.example/join/" ; joinURL = JoinBaseURL + numericId
	SIPDomain                  string        // sipURI = "sip:" + numericId + "@" + SIPDomain
	DriftCheckInterval         time.Duration // how often a Ready room is compared with the backend, and orphans swept (0 = never)
	BackendTimeout             time.Duration // per backend call
	MaxConcurrentReconciles    int

	// apiReader reads objects the cache may not show yet: a Secret named by
	// spec.pinSecretRef before the operator labels it, a claim another
	// replica just created, the VMR holding it.
	apiReader client.Reader
	clock     clock.PassiveClock
	numbers   *rooms.NumberPool
	tracker   *roomTracker
	once      sync.Once
	setupErr  error
}

const (
	// pinSecretRecheck: a missing Secret named by spec.pinSecretRef sends no
	// event when it appears (it is not labelled yet, so not watched).
	pinSecretRecheck = time.Minute
	// backendConflictRecheck: a clash with a room the operator does not own is
	// resolved in the backend, which sends no event.
	backendConflictRecheck = 5 * time.Minute
	// claimRecheck: a claim released wakes its waiters through the watch;
	// this is the safety net.
	claimRecheck = time.Minute

	// vmrLabel marks the generated PIN Secret with the name of its room.
	vmrLabel = "tenancy.visio.dev/vmr"
)

// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=vmrs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=vmrs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=vmrs/finalizers,verbs=update
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=dialstringclaims,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=tenancy.visio.dev,resources=platformusers,verbs=get;list;watch
// The generated PIN Secrets are created, then only read (the garbage collector
// deletes them with their room); a Secret named by spec.pinSecretRef is
// patched once, with a label alone, so that the cache (list and watch, PIN
// Secrets only) holds it and a PIN change reaches its room at once.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one VMR and its backend room towards the spec.
func (r *VMRReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	if err := r.setup(); err != nil {
		return ctrl.Result{}, err
	}
	vmr := &v1.VMR{}
	if err := r.Get(ctx, req.NamespacedName, vmr); err != nil {
		if apierrors.IsNotFound(err) {
			r.tracker.forget(req.NamespacedName)
			metrics.ForgetRoom(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("cannot read room: %w", err)
	}
	orig := vmr.DeepCopy()
	metrics.RoomSeen(vmr, r.clock.Now())
	pass := &vmrPass{}
	defer func() {
		r.computeStatus(vmr, pass, retErr)
		r.emitTransition(orig, vmr)
		if err := patchStatusIfChanged(ctx, r.Client, orig, vmr, &orig.Status, &vmr.Status); err != nil && retErr == nil {
			retErr = err
		} else if err == nil {
			metrics.RoomStatusWritten(r.Backend.Name(), orig, vmr, r.clock.Now())
		}
	}()

	if !vmr.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, vmr, pass)
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
			r.stall(vmr, pass, &roomBlock{reason: v1.ReasonNotInEntityNamespace,
				message: fmt.Sprintf("namespace %q belongs to no entity: rooms are provisioned in an entity's namespace only (kubectl get entities)", vmr.Namespace),
				recheck: time.Minute})
			return pass.result(), nil
		}
	}
	if controllerutil.AddFinalizer(vmr, v1.VMRFinalizer) {
		// The finalizer must be stored before the room exists in the backend
		// or holds a claim, or a deletion racing with creation could leave
		// them behind.
		if err := r.Update(ctx, vmr); err != nil {
			return ctrl.Result{}, fmt.Errorf("cannot add finalizer: %w", err)
		}
		orig.ObjectMeta = *vmr.ObjectMeta.DeepCopy()
	}
	return r.reconcileNormal(ctx, vmr, orig, pass)
}

// reconcileNormal runs the phases in order; each one either lets the pass go
// on or ends it with what it found.
func (r *VMRReconciler) reconcileNormal(ctx context.Context, vmr, orig *v1.VMR, pass *vmrPass) (ctrl.Result, error) {
	if err := r.phaseNumericID(ctx, vmr, pass); err != nil || pass.done() {
		return pass.result(), err
	}
	if err := r.phaseOwner(ctx, vmr, pass); err != nil || pass.done() {
		return pass.result(), err
	}
	if err := r.phasePINs(ctx, vmr, pass); err != nil || pass.done() {
		return pass.result(), err
	}
	pass.want = rooms.Desired(rooms.Spec{
		UID: vmr.UID, DisplayName: vmr.Spec.DisplayName, Description: vmr.Spec.Description,
		NumericID: pass.numericID, Aliases: vmr.Spec.Aliases, SIPDomain: r.SIPDomain,
		HostPIN: pass.pins.host, GuestPIN: pass.pins.guest, AllowGuests: vmr.Spec.AllowGuests,
		ParticipantLimit: vmr.Spec.ParticipantLimit,
	})
	if err := r.phaseClaims(ctx, vmr, pass); err != nil || pass.done() {
		return pass.result(), err
	}
	if err := r.phaseBackend(ctx, vmr, orig, pass); err != nil || pass.done() {
		return pass.result(), err
	}
	// The room dials by exactly these now: what it dialled by before is let go.
	if err := r.releaseClaims(ctx, vmr, inSet(pass.want.DialStrings())); err != nil {
		return ctrl.Result{}, err
	}
	return pass.result(), nil
}

func inSet(set []string) func(string) bool {
	return func(s string) bool { return slices.Contains(set, s) }
}

func (r *VMRReconciler) forget(nn types.NamespacedName, uid types.UID) {
	r.tracker.forget(nn)
	r.numbers.Release(uid)
}

// setup prepares the reconciler's own state, once. Its settings come checked
// from operator.Options; setup only refuses a reconciler built without them.
func (r *VMRReconciler) setup() error {
	r.once.Do(func() {
		if r.clock == nil {
			r.clock = clock.RealClock{}
		}
		if r.numbers == nil {
			r.numbers = rooms.NewNumberPool()
		}
		if r.tracker == nil {
			r.tracker = newRoomTracker()
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

// reader reads objects the cache does not hold, or not yet.
func (r *VMRReconciler) reader() client.Reader {
	if r.apiReader != nil {
		return r.apiReader
	}
	return r.Client
}

// SetupWithManager registers the controller: VMRs, their PIN Secrets
// (generated or named), the owners they follow, the other VMRs they share a
// dial string with and the claims they wait for (so that a room proceeds once
// a holder lets go), and the sweep of orphaned backend rooms.
func (r *VMRReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.apiReader = mgr.GetAPIReader()
	if err := r.setup(); err != nil {
		return err
	}
	if r.DriftCheckInterval > 0 {
		if err := mgr.Add(&roomSweeper{r: r, interval: r.DriftCheckInterval}); err != nil {
			return err
		}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.VMR{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.roomsOfSecret)).
		Watches(&v1.PlatformUser{}, handler.EnqueueRequestsFromMapFunc(r.roomsOfOwner),
			builder.WithPredicates(ownerStateChanged)).
		Watches(&v1.VMR{}, handler.EnqueueRequestsFromMapFunc(r.roomsSharingDialStrings),
			builder.WithPredicates(dialStringsChanged)).
		Watches(&v1.DialStringClaim{}, handler.EnqueueRequestsFromMapFunc(r.roomsWaitingForClaim),
			builder.WithPredicates(claimReleased)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Named("vmr").
		Complete(r)
}

// roomsOfSecret maps a PIN Secret to the rooms that use it: the PINs changed,
// so the backend room must change within this reconcile.
func (r *VMRReconciler) roomsOfSecret(ctx context.Context, o client.Object) []reconcile.Request {
	list := &v1.VMRList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index.VMRPINSecret: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "Cannot list the rooms of a PIN Secret", "secret", client.ObjectKeyFromObject(o))
		return nil
	}
	return requests(list.Items)
}

// roomsOfOwner maps a PlatformUser to the rooms it owns.
func (r *VMRReconciler) roomsOfOwner(ctx context.Context, o client.Object) []reconcile.Request {
	list := &v1.VMRList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index.VMROwner: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "Cannot list the rooms of an owner", "owner", client.ObjectKeyFromObject(o))
		return nil
	}
	return requests(list.Items)
}

// roomsWaitingForClaim maps a released claim to the rooms asking for its
// dial string.
func (r *VMRReconciler) roomsWaitingForClaim(ctx context.Context, o client.Object) []reconcile.Request {
	c, ok := o.(*v1.DialStringClaim)
	if !ok {
		return nil
	}
	list := &v1.VMRList{}
	if err := r.List(ctx, list, client.MatchingFields{index.VMRDialString: c.Spec.DialString}); err != nil {
		log.FromContext(ctx).Error(err, "Cannot list the rooms waiting for a dial string")
		return nil
	}
	return requests(list.Items)
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

func requests(items []v1.VMR) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(items))
	for i := range items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&items[i])})
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

// claimReleased passes only the deletion of a claim: the moment a waiting
// room can take the dial string.
var claimReleased = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
}
