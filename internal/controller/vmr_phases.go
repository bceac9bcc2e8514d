package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/rooms"
)

// vmrPass is what one reconcile pass found and did, for computeStatus. The
// phases fill it in; none of them writes the status.
type vmrPass struct {
	numericID string
	pins      pinPair
	// pinsRead: the PIN Secret was read this pass (pins and its version are set).
	pinsRead bool
	want     backend.Room
	// block ends the pass Stalled: a human must act.
	block *roomBlock
	// failure ends the pass with a backend error the operator retries.
	failure *backendFailure
	// ready: the backend room matches want.
	ready bool
	// advertise, when set, is exactly the dial strings known to dial the
	// room; unset keeps the addresses the status shows (the room was left
	// as it was).
	advertise    []string
	advertiseSet bool
	requeue      time.Duration
}

// done reports whether the pass ended before the backend room matched.
func (p *vmrPass) done() bool { return p.block != nil || p.failure != nil }

// result requeues the room for its next check with low priority: a
// recheck or drift check waits behind what events bring (a room created or
// changed, a Secret rotated), and, in order of arrival, among the rooms of
// the initial listing, which the queue also ranks low. With checks given the
// priority of the event that first brought their room, more checks due than
// the workers can do starved the rooms listed at a restart that were not
// provisioned yet, for as long as the checks kept coming.
func (p *vmrPass) result() ctrl.Result {
	after := p.requeue
	if p.block != nil {
		after = p.block.recheck
	}
	if after <= 0 {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: after, Priority: ptr.To(handler.LowPriority)}
}

func (p *vmrPass) setAdvertised(dial []string) {
	p.advertise, p.advertiseSet = slices.Clone(dial), true
	if p.advertise == nil {
		p.advertise = []string{}
	}
}

// roomBlock is why a room cannot proceed until a human acts: the reason and
// message go on Ready, Stalled and Provisioned.
type roomBlock struct {
	reason, message string
	// recheck, when set, is when to look again for a fix that sends no event.
	recheck time.Duration
}

// stall ends the pass with b. The backend room, if any, is left as it is and
// keeps being advertised as it was; a room with none advertises nothing.
func (r *VMRReconciler) stall(vmr *v1.VMR, pass *vmrPass, b *roomBlock) {
	r.tracker.forget(client.ObjectKeyFromObject(vmr))
	pass.block = b
	if vmr.Status.BackendRef == "" {
		pass.setAdvertised(nil)
	}
}

// phaseNumericID settles the number the room is dialled by: the given one,
// the one already allocated, or a newly picked free one.
func (r *VMRReconciler) phaseNumericID(ctx context.Context, vmr *v1.VMR, pass *vmrPass) error {
	switch {
	case vmr.Spec.NumericID != "":
		pass.numericID = vmr.Spec.NumericID
		return nil
	case vmr.Status.NumericID != "":
		// Whether it is still the room's is settled by its claim.
		pass.numericID = vmr.Status.NumericID
		return nil
	}
	n, err := r.pickNumber(ctx, vmr, nil)
	if errors.Is(err, rooms.ErrNumbersExhausted) {
		r.stall(vmr, pass, &roomBlock{reason: v1.ReasonNumericIDsExhausted, recheck: claimRecheck,
			message: fmt.Sprintf("every numeric id from %d to %d is taken; set spec.numericId or widen the operator's range",
				r.NumericIDMin, r.NumericIDMax)})
		return nil
	}
	if err != nil {
		return err
	}
	pass.numericID = n
	return nil
}

// pickNumber picks a free generated number, other than those of exclude.
func (r *VMRReconciler) pickNumber(ctx context.Context, vmr *v1.VMR, exclude []string) (string, error) {
	taken := func(s string) (bool, error) {
		if slices.Contains(vmr.Spec.Aliases, s) || slices.Contains(exclude, s) {
			return true, nil
		}
		others, err := r.otherClaimants(ctx, vmr, s)
		if err != nil || len(others) > 0 {
			return true, err
		}
		c := &v1.DialStringClaim{}
		err = r.Get(ctx, client.ObjectKey{Name: rooms.ClaimName(s)}, c)
		switch {
		case apierrors.IsNotFound(err):
			return false, nil
		case err != nil:
			return true, fmt.Errorf("cannot read the claim of %q: %w", s, err)
		}
		return c.Spec.VMR.UID != string(vmr.UID), nil
	}
	claimed := func() (map[string]bool, error) {
		set := map[string]bool{}
		all := &v1.VMRList{}
		if err := r.List(ctx, all); err != nil {
			return nil, fmt.Errorf("cannot list rooms: %w", err)
		}
		for i := range all.Items {
			if all.Items[i].UID == vmr.UID {
				continue
			}
			for _, s := range index.DialStrings(&all.Items[i]) {
				set[s] = true
			}
		}
		claims := &v1.DialStringClaimList{}
		if err := r.List(ctx, claims); err != nil {
			return nil, fmt.Errorf("cannot list claims: %w", err)
		}
		for _, c := range claims.Items {
			if c.Spec.VMR.UID != string(vmr.UID) {
				set[c.Spec.DialString] = true
			}
		}
		for _, a := range append(slices.Clone(vmr.Spec.Aliases), exclude...) {
			set[a] = true
		}
		return set, nil
	}
	return r.numbers.Pick(r.NumericIDMin, r.NumericIDMax, vmr.UID, r.clock.Now(), taken, claimed)
}

// otherClaimants lists, from the cache, the VMRs other than vmr that ask for
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

// phaseOwner stalls the room when its owner is missing, inactive or
// unlicensed.
func (r *VMRReconciler) phaseOwner(ctx context.Context, vmr *v1.VMR, pass *vmrPass) error {
	name := vmr.Spec.Owner
	if name == "" {
		return nil
	}
	u := &v1.PlatformUser{}
	err := r.Get(ctx, client.ObjectKey{Namespace: vmr.Namespace, Name: name}, u)
	var msg string
	switch {
	case apierrors.IsNotFound(err):
		msg = fmt.Sprintf("owner %q does not exist in namespace %q", name, vmr.Namespace)
	case err != nil:
		return fmt.Errorf("cannot read owner %q: %w", name, err)
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
		return nil
	}
	if vmr.Status.BackendRef != "" {
		msg += "; the room is kept in the backend but not updated"
	}
	r.stall(vmr, pass, &roomBlock{reason: v1.ReasonOwnerNotLicensed, message: msg})
	return nil
}

// phasePINs reads the room's PINs and the version of their Secret.
func (r *VMRReconciler) phasePINs(ctx context.Context, vmr *v1.VMR, pass *vmrPass) error {
	p, b, err := r.roomPINs(ctx, vmr)
	if err != nil {
		return err
	}
	if b != nil {
		r.stall(vmr, pass, b)
		return nil
	}
	pass.pins, pass.pinsRead = p, true
	return nil
}

// phaseClaims makes the room the holder of every dial string it advertises,
// in the API server, before anything is provisioned. A generated number held
// by another room is exchanged for a free one; a given number or alias held
// by another room stalls this one.
func (r *VMRReconciler) phaseClaims(ctx context.Context, vmr *v1.VMR, pass *vmrPass) error {
	// Claims of dial strings the room no longer asks for and does not dial
	// by are let go first: a room waiting must not keep others waiting for
	// what it gave up.
	want := pass.want.DialStrings()
	if err := r.releaseClaims(ctx, vmr, func(d string) bool { return slices.Contains(want, d) || r.provisionedWith(vmr, d) }); err != nil {
		return err
	}
	var exclude []string
	for attempt := 0; ; attempt++ {
		holder, dial, err := r.claimAll(ctx, vmr, pass.want.DialStrings())
		if err != nil {
			return err
		}
		if holder == nil {
			return nil
		}
		generated := vmr.Spec.NumericID == "" && dial == pass.numericID
		if generated && !r.provisionedWith(vmr, dial) && attempt < 5 {
			log.FromContext(ctx).Info("Generated numeric id is held by another room; picking another",
				"numericId", dial, "heldBy", holder.Spec.VMR.Namespace+"/"+holder.Spec.VMR.Name)
			exclude = append(exclude, dial)
			n, err := r.pickNumber(ctx, vmr, exclude)
			if err != nil {
				return fmt.Errorf("cannot pick another numeric id: %w", err)
			}
			pass.numericID = n
			pass.want = withNumericID(pass.want, vmr, n, r.SIPDomain)
			continue
		}
		what := "alias"
		if dial == pass.numericID {
			what = "numeric id"
		}
		r.stall(vmr, pass, &roomBlock{reason: v1.ReasonAliasConflict, recheck: claimRecheck, message: fmt.Sprintf(
			"%s %q is held by VMR %s/%s; choose another", what, dial, holder.Spec.VMR.Namespace, holder.Spec.VMR.Name)})
		return nil
	}
}

// withNumericID is want with another numeric id (and its SIP alias).
func withNumericID(want backend.Room, vmr *v1.VMR, n, sipDomain string) backend.Room {
	old := rooms.SIPAlias(want.NumericID, sipDomain)
	aliases := slices.DeleteFunc(slices.Clone(want.Aliases), func(a string) bool { return old != "" && a == old })
	if sip := rooms.SIPAlias(n, sipDomain); sip != "" {
		aliases = append(aliases, sip)
	}
	want.NumericID = n
	want.Aliases = rooms.SortedAliases(aliases)
	want.Name = rooms.Name(vmr.Spec.DisplayName, n)
	return want
}

// phaseBackend makes the backend room match pass.want. A recorded room is
// read and repaired only when that is due (spec, PINs or their Secret
// changed, drift check); a room without a recorded reference, or gone from
// the backend, is provisioned.
func (r *VMRReconciler) phaseBackend(ctx context.Context, vmr, orig *v1.VMR, pass *vmrPass) error {
	now := r.clock.Now()
	want := pass.want
	fp := fingerprintRoom(want)
	ref := vmr.Status.BackendRef
	if ref == "" {
		return r.provision(ctx, vmr, orig, pass, fp, now)
	}
	if !r.checkDue(vmr, fp, now, pass.pins.version) {
		r.ready(vmr, pass)
		return nil
	}
	have, err := r.backendGet(ctx, ref, want.Key)
	switch {
	case errors.Is(err, backend.ErrNotFound):
		log.FromContext(ctx).Info("Room is missing from the backend; creating it again", "backendRef", ref)
		r.Recorder.Eventf(vmr, nil, corev1.EventTypeWarning, v1.ReasonRoomMissing, "Provision",
			"Room %s was removed from %s outside the operator; creating it again", ref, r.Backend.Name())
		// A reference to nothing is dropped, so that a failed re-creation
		// is retried without reading it again.
		vmr.Status.BackendRef = ""
		return r.provision(ctx, vmr, orig, pass, fp, now)
	case errors.Is(err, backend.ErrConflict):
		// Somebody else's room at our id: never changed. The reference is
		// dropped, and the next pass provisions the room again, if its dial
		// strings are free.
		vmr.Status.BackendRef = ""
		r.stall(vmr, pass, r.conflictBlock(err, want, fmt.Sprintf("the room recorded as %s is left alone; ", ref), 10*time.Second))
		return nil
	case err != nil:
		return r.backendFailed(vmr, pass, "read room "+ref, err)
	}
	return r.repair(ctx, vmr, pass, ref, have, fp, now)
}

// provision creates the room, or lets the backend find and complete the one
// an earlier pass created without recording it (Create looks the key up
// first), and records its reference at once.
func (r *VMRReconciler) provision(ctx context.Context, vmr, orig *v1.VMR, pass *vmrPass, fp roomFingerprint, now time.Time) error {
	want := pass.want
	ref, err := r.backendCreate(ctx, want)
	if ref != "" {
		// Recorded before anything else, so that no later failure can lose
		// it; were this write to fail, the next pass finds the room by key.
		if rerr := r.recordBackendRef(ctx, vmr, orig, ref); rerr != nil {
			return fmt.Errorf("cannot record the reference of room %s provisioned in %s (it will be found by key): %w",
				ref, r.Backend.Name(), rerr)
		}
	}
	switch {
	case errors.Is(err, backend.ErrConflict):
		r.stall(vmr, pass, r.conflictBlock(err, want, "", backendConflictRecheck))
		return nil
	case err != nil:
		if vmr.Status.BackendRef == "" {
			pass.setAdvertised(nil)
		}
		return r.backendFailed(vmr, pass, "create room", err)
	}
	log.FromContext(ctx).Info("Provisioned room in the backend", "backendRef", ref, "numericId", want.NumericID)
	r.tracker.checked(client.ObjectKeyFromObject(vmr), vmr.UID, fp, now)
	r.ready(vmr, pass)
	return nil
}

// repair compares the room read from the backend with want and updates the
// fields that differ. A nil room means the backend keeps nothing to compare
// (embedded).
func (r *VMRReconciler) repair(ctx context.Context, vmr *v1.VMR, pass *vmrPass, ref string, have *backend.Room,
	fp roomFingerprint, now time.Time) error {
	want := pass.want
	if diff := rooms.Diff(want, have); len(diff) > 0 {
		log.FromContext(ctx).Info("Updating room in the backend", "backendRef", ref, "fields", diff)
		err := r.backendUpdate(ctx, ref, want)
		switch {
		case errors.Is(err, backend.ErrConflict):
			r.stall(vmr, pass, r.conflictBlock(err, want, "", backendConflictRecheck))
			// What it had and still should have dials it; the rest is unsure.
			pass.setAdvertised(intersect(want.DialStrings(), have.DialStrings()))
			return nil
		case errors.Is(err, backend.ErrNotFound):
			// Gone since it was read: the next pass creates it again.
			vmr.Status.BackendRef = ""
			pass.setAdvertised(nil)
			return r.backendFailed(vmr, pass, "update room "+ref, err)
		case err != nil:
			return r.backendFailed(vmr, pass, "update room "+ref, err)
		}
		r.Recorder.Eventf(vmr, nil, corev1.EventTypeNormal, v1.ReasonUpdated, "Update",
			"Updated room %s in %s: %s differed", want.NumericID, r.Backend.Name(), joinFieldNames(diff))
	}
	r.tracker.checked(client.ObjectKeyFromObject(vmr), vmr.UID, fp, now)
	r.ready(vmr, pass)
	return nil
}

// ready ends the pass with the backend room matching want, and asks to come
// back when the drift check is due.
func (r *VMRReconciler) ready(vmr *v1.VMR, pass *vmrPass) {
	pass.ready = true
	pass.setAdvertised(pass.want.DialStrings())
	pass.requeue = r.tracker.nextCheck(client.ObjectKeyFromObject(vmr), vmr.UID, r.clock.Now(), r.DriftCheckInterval)
}

// checkDue reports whether the backend room must be read and compared with
// the desired one. This process's own record comes first: a room it left
// matching fp is compared again only when the drift check is due, whatever a
// status read from a lagging cache says. A room it does not know (after a
// start, a leader change, or a pass that did not end Ready) is compared
// unless its status says it was left provisioned for this generation with
// the PINs of the Secret's current version; then it is taken to match and
// its first drift check is spread over the interval. So a PIN changed while
// no operator ran is applied at the first pass, drift checks or not.
func (r *VMRReconciler) checkDue(vmr *v1.VMR, fp roomFingerprint, now time.Time, pinVersion string) bool {
	nn := client.ObjectKeyFromObject(vmr)
	if due, known := r.tracker.due(nn, vmr.UID, fp, now, r.DriftCheckInterval); known {
		return due
	}
	if vmr.Generation != vmr.Status.ObservedGeneration || vmr.Status.PINSecretResourceVersion != pinVersion {
		return true
	}
	c := findCondition(vmr.Status.Conditions, v1.ProvisionedCondition)
	if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != vmr.Generation {
		return true
	}
	r.tracker.seed(nn, vmr.UID, fp, now, r.DriftCheckInterval)
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

// reconcileDelete removes the backend room (or hands it over when retained),
// releases the room's claims, then lets the VMR go. The generated PIN Secret
// is removed by the garbage collector.
func (r *VMRReconciler) reconcileDelete(ctx context.Context, vmr *v1.VMR, pass *vmrPass) (ctrl.Result, error) {
	nn := client.ObjectKeyFromObject(vmr)
	if !controllerutil.ContainsFinalizer(vmr, v1.VMRFinalizer) {
		r.forget(nn, vmr.UID)
		return ctrl.Result{}, nil
	}
	key := rooms.Key(vmr.UID)
	retain := vmr.Spec.DeletionPolicy == v1.DeletionPolicyRetain
	// The backend checks the reference against the key. A room created
	// just before a crash has no reference recorded, and one at the
	// recorded id may be somebody else's by now: then it is found by key.
	ref := vmr.Status.BackendRef
	for range 2 {
		if ref == "" {
			found, _, err := r.backendFind(ctx, key)
			if errors.Is(err, backend.ErrNotFound) {
				break
			}
			if err != nil {
				return ctrl.Result{}, r.backendFailed(vmr, pass, "look up room", err)
			}
			ref = found
		}
		var err error
		if retain {
			err = r.backendRelease(ctx, ref, key)
		} else {
			err = r.backendDelete(ctx, ref, key)
		}
		if errors.Is(err, backend.ErrConflict) {
			log.FromContext(ctx).Info("The room recorded for this VMR belongs to someone else now; left alone", "backendRef", ref)
			ref = ""
			continue
		}
		if err != nil {
			return ctrl.Result{}, r.backendFailed(vmr, pass, "remove room "+ref, err)
		}
		if retain {
			r.Recorder.Eventf(vmr, nil, corev1.EventTypeNormal, v1.ReasonRetained, "Delete",
				"Left room %s in %s (deletionPolicy Retain); it no longer carries the operator's key", ref, r.Backend.Name())
		} else {
			log.FromContext(ctx).Info("Deleted room from the backend", "backendRef", ref)
			r.Recorder.Eventf(vmr, nil, corev1.EventTypeNormal, v1.ReasonDeleted, "Delete",
				"Deleted room %s from %s", ref, r.Backend.Name())
		}
		break
	}
	if err := r.releaseClaims(ctx, vmr, nil); err != nil {
		return ctrl.Result{}, err
	}
	controllerutil.RemoveFinalizer(vmr, v1.VMRFinalizer)
	if err := r.Update(ctx, vmr); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("cannot remove finalizer: %w", err)
	}
	r.forget(nn, vmr.UID)
	return ctrl.Result{}, nil
}

// backendFailed records a backend failure the operator retries with backoff.
// The room is forgotten as matching: the failed call may have changed part of
// it. The PINs are removed from the message, whatever the backend put in it.
func (r *VMRReconciler) backendFailed(vmr *v1.VMR, pass *vmrPass, doing string, err error) error {
	r.tracker.forget(client.ObjectKeyFromObject(vmr))
	msg := truncate(redactPINs(fmt.Sprintf("%s: cannot %s: %v", r.Backend.Name(), doing, err), pass.want.HostPIN, pass.want.GuestPIN, pass.pins.host, pass.pins.guest))
	pass.failure = &backendFailure{msg: msg, err: err}
	return pass.failure
}

// conflictBlock is the block for a room the backend holds for someone else.
func (r *VMRReconciler) conflictBlock(err error, want backend.Room, lead string, recheck time.Duration) *roomBlock {
	name := r.Backend.Name()
	msg := redactPINs(fmt.Sprintf("%s: %s%v; the operator never adopts, changes or removes it: remove or rename it in %s, or change this room's numeric id or aliases",
		name, lead, err, name), want.HostPIN, want.GuestPIN)
	return &roomBlock{reason: v1.ReasonBackendConflict, message: truncate(msg), recheck: recheck}
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// Backend calls, each bounded by BackendTimeout on its own.

func (r *VMRReconciler) backendFind(ctx context.Context, key string) (string, *backend.Room, error) {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Find(ctx, key)
}

func (r *VMRReconciler) backendGet(ctx context.Context, ref, key string) (*backend.Room, error) {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Get(ctx, ref, key)
}

func (r *VMRReconciler) backendCreate(ctx context.Context, room backend.Room) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Create(ctx, room)
}

func (r *VMRReconciler) backendUpdate(ctx context.Context, ref string, room backend.Room) error {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Update(ctx, ref, room)
}

func (r *VMRReconciler) backendDelete(ctx context.Context, ref, key string) error {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Delete(ctx, ref, key)
}

func (r *VMRReconciler) backendRelease(ctx context.Context, ref, key string) error {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Release(ctx, ref, key)
}
