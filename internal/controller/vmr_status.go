package controller

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
)

// roomBlock is why a room cannot proceed until a human acts: the reason and
// message go on Ready, Stalled and Provisioned.
type roomBlock struct {
	reason, action, message string
	// recheck, when set, is when to look again for a fix that sends no event.
	recheck time.Duration
}

// stall records that the room is roomBlock. The backend room, if any, is left as
// it is; it is forgotten as matching, and Provisioned=False makes the pass
// that follows the fix compare it with the spec again.
func (r *VMRReconciler) stall(vmr *v1.VMR, prevReason string, b *roomBlock) ctrl.Result {
	r.rooms.forget(client.ObjectKeyFromObject(vmr))
	setProvisioned(vmr, metav1.ConditionFalse, b.reason, b.message)
	setPhase(&vmr.Status.StatusBase, vmr.Generation, phaseStalled, b.reason, b.message)
	if prevReason != b.reason {
		r.Recorder.Eventf(vmr, nil, corev1.EventTypeWarning, b.reason, b.action, "%s", b.message)
	}
	return ctrl.Result{RequeueAfter: b.recheck}
}

// ready records that the backend room matches the spec, and asks to come back
// when the drift check is due.
func (r *VMRReconciler) ready(vmr *v1.VMR, want backend.Room) ctrl.Result {
	msg := fmt.Sprintf("room %s provisioned in %s", want.NumericID, r.Backend.Name())
	setProvisioned(vmr, metav1.ConditionTrue, v1.ReasonProvisioned, msg)
	setPhase(&vmr.Status.StatusBase, vmr.Generation, phaseReady, v1.ReasonProvisioned, msg)
	return ctrl.Result{RequeueAfter: r.rooms.nextCheck(client.ObjectKeyFromObject(vmr), vmr.UID, r.clock.Now(), r.DriftCheckInterval)}
}

// backendFailed records a backend failure the operator retries with backoff.
// The room is forgotten as matching: the failed call may have changed part of
// it. The PINs of want are removed from the message, whatever the backend put
// in it.
func (r *VMRReconciler) backendFailed(vmr *v1.VMR, prevReason, doing string, err error, want backend.Room) (ctrl.Result, error) {
	r.rooms.forget(client.ObjectKeyFromObject(vmr))
	msg := truncate(redactPINs(fmt.Sprintf("%s: cannot %s: %v", r.Backend.Name(), doing, err), want.HostPIN, want.GuestPIN))
	setProvisioned(vmr, metav1.ConditionFalse, v1.ReasonBackendError, msg)
	setPhase(&vmr.Status.StatusBase, vmr.Generation, phaseProgressing, v1.ReasonBackendError, msg)
	if prevReason != v1.ReasonBackendError {
		r.Recorder.Eventf(vmr, nil, corev1.EventTypeWarning, v1.ReasonBackendError, "Provision", "%s", msg)
	}
	return ctrl.Result{}, &backendFailure{msg: msg, err: err}
}

// backendConflict is the block for a room the backend holds for someone else.
func backendConflict(backendName string, err error, want backend.Room) *roomBlock {
	msg := redactPINs(fmt.Sprintf("%s: %v; the operator never adopts it: remove or rename it in %s, or change this room's numeric id or aliases",
		backendName, err, backendName), want.HostPIN, want.GuestPIN)
	return &roomBlock{reason: v1.ReasonBackendConflict, action: "Provision", message: truncate(msg), recheck: backendConflictRecheck}
}

func setProvisioned(vmr *v1.VMR, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&vmr.Status.Conditions, metav1.Condition{Type: v1.ProvisionedCondition, Status: status,
		Reason: reason, Message: msg, ObservedGeneration: vmr.Generation})
}

// backendFailure is a backend failure the status already explains: the pass's final
// status write keeps that explanation instead of the generic ReconcileFailed.
// Its message has the room's PINs removed; the wrapped error is kept for
// errors.Is.
type backendFailure struct {
	msg string
	err error
}

func (e *backendFailure) Error() string { return e.msg }
func (e *backendFailure) Unwrap() error { return e.err }

func isBackendFailure(err error) bool {
	var re *backendFailure
	return errors.As(err, &re)
}

// redact replaces every occurrence of the secrets in s.
func redactPINs(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// setAddresses records how the room is dialled.
func (r *VMRReconciler) setAddresses(vmr *v1.VMR, numericID string) {
	st := &vmr.Status
	st.NumericID = numericID
	st.Aliases = sortedAliases(vmr.Spec.Aliases)
	st.JoinURL, st.SIPURI = "", ""
	if r.JoinBaseURL != "" {
		st.JoinURL = r.JoinBaseURL + numericID
	}
	if r.SIPDomain != "" {
		st.SIPURI = "sip:" + numericID + "@" + r.SIPDomain
	}
}

// roomKey marks the backend room as this VMR's. It derives from the UID, so it
// is known before the room exists and differs for a VMR recreated under the
// same name.
func roomKey(vmr *v1.VMR) string { return "visio-" + string(vmr.UID) }

// roomName is unique on the platform because namespace/name is.
func roomName(vmr *v1.VMR) string { return vmr.Namespace + "/" + vmr.Name }

func sortedAliases(aliases []string) []string {
	if len(aliases) == 0 {
		return nil
	}
	out := slices.Clone(aliases)
	slices.Sort(out)
	return slices.Compact(out)
}

// desiredRoom is the backend room the VMR declares. The guest PIN is sent only
// when guests are allowed: otherwise it admits nobody.
func desiredRoom(vmr *v1.VMR, numericID string, p pinPair) backend.Room {
	room := backend.Room{
		Key:         roomKey(vmr),
		Name:        roomName(vmr),
		Description: vmr.Spec.Description,
		NumericID:   numericID,
		Aliases:     sortedAliases(vmr.Spec.Aliases),
		HostPIN:     p.host,
		AllowGuests: vmr.Spec.AllowGuests,
	}
	if vmr.Spec.AllowGuests {
		room.GuestPIN = p.guest
	}
	if l := vmr.Spec.ParticipantLimit; l != nil {
		v := *l
		room.ParticipantLimit = &v
	}
	return room
}

// roomDiffOrNone is roomDiff, with nothing to compare when the backend keeps
// no state of its own (a nil room).
func roomDiffOrNone(want backend.Room, have *backend.Room) []string {
	if have == nil {
		return nil
	}
	return roomDiff(want, have)
}

// roomDiff names the fields in which have differs from want. It returns names
// only, so it can be logged: never a value.
func roomDiff(want backend.Room, have *backend.Room) []string {
	var diff []string
	add := func(differs bool, name string) {
		if differs {
			diff = append(diff, name)
		}
	}
	add(want.Key != have.Key, "key")
	add(want.Name != have.Name, "name")
	add(want.Description != have.Description, "description")
	add(want.NumericID != have.NumericID, "numericId")
	add(!slices.Equal(sortedAliases(want.Aliases), sortedAliases(have.Aliases)), "aliases")
	add(want.HostPIN != have.HostPIN, "hostPin")
	add(want.GuestPIN != have.GuestPIN, "guestPin")
	add(want.AllowGuests != have.AllowGuests, "allowGuests")
	add(!sameParticipantLimit(want.ParticipantLimit, have.ParticipantLimit), "participantLimit")
	return diff
}

func sameParticipantLimit(a, b *int32) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func joinFieldNames(fields []string) string { return strings.Join(fields, ", ") }

// roomFingerprint identifies a desired room, PINs included. It is kept in
// memory only, to notice a PIN change in the Secret (which does not change the
// VMR's generation) without reading the backend.
type roomFingerprint [sha256.Size]byte

func fingerprintRoom(room backend.Room) roomFingerprint {
	h := sha256.New()
	put := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(room.Key)
	put(room.Name)
	put(room.Description)
	put(room.NumericID)
	put(strconv.Itoa(len(room.Aliases)))
	for _, a := range sortedAliases(room.Aliases) {
		put(a)
	}
	put(room.HostPIN)
	put(room.GuestPIN)
	put(strconv.FormatBool(room.AllowGuests))
	if room.ParticipantLimit == nil {
		put("-")
	} else {
		put(strconv.Itoa(int(*room.ParticipantLimit)))
	}
	var fp roomFingerprint
	copy(fp[:], h.Sum(nil))
	return fp
}

// roomTracker remembers, per room, what was last found in place in the
// backend and when, so that a Ready room costs no backend call until its
// drift check is due or what it should be changes.
type roomTracker struct {
	mu    sync.Mutex
	rooms map[types.NamespacedName]trackedRoom
}

type trackedRoom struct {
	uid       types.UID
	applied   roomFingerprint
	checkedAt time.Time
}

func newRoomTracker() *roomTracker {
	return &roomTracker{rooms: map[types.NamespacedName]trackedRoom{}}
}

// due reports whether the room must be compared with the backend (the
// desired room changed since the last comparison, or the drift check is
// due), and whether this process knows the room at all.
func (t *roomTracker) due(nn types.NamespacedName, uid types.UID, fp roomFingerprint, now time.Time, interval time.Duration) (due, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.rooms[nn]
	if !ok || tr.uid != uid {
		return false, false
	}
	if tr.applied != fp {
		return true, true
	}
	return interval > 0 && now.Sub(tr.checkedAt) >= interval, true
}

// seed records a room first seen by this process as matching fp, as its
// status says, with its first drift check at a point of the interval derived
// from its UID, so that a restart does not read every room at once.
func (t *roomTracker) seed(nn types.NamespacedName, uid types.UID, fp roomFingerprint, now time.Time, interval time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rooms[nn] = trackedRoom{uid: uid, applied: fp, checkedAt: now.Add(-driftSpread(uid, interval))}
}

// checked records that the backend room matched fp at now.
func (t *roomTracker) checked(nn types.NamespacedName, uid types.UID, fp roomFingerprint, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rooms[nn] = trackedRoom{uid: uid, applied: fp, checkedAt: now}
}

// nextCheck is how long until the room's drift check is due; 0 when drift is
// never checked.
func (t *roomTracker) nextCheck(nn types.NamespacedName, uid types.UID, now time.Time, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.rooms[nn]
	if !ok || tr.uid != uid {
		return interval
	}
	return max(tr.checkedAt.Add(interval).Sub(now), time.Second)
}

func (t *roomTracker) forget(nn types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.rooms, nn)
}

// spread is a fixed fraction of interval for each uid.
func driftSpread(uid types.UID, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return time.Duration(uidHash(uid) % uint64(interval))
}

func uidHash(uid types.UID) uint64 {
	h := fnv.New64a()
	h.Write([]byte(uid))
	return h.Sum64()
}

// Backend calls, each bounded by BackendTimeout on its own.

func (r *VMRReconciler) backendFind(ctx context.Context, key string) (string, *backend.Room, error) {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Find(ctx, key)
}

func (r *VMRReconciler) backendGet(ctx context.Context, ref string) (*backend.Room, error) {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Get(ctx, ref)
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

func (r *VMRReconciler) backendDelete(ctx context.Context, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	defer cancel()
	return r.Backend.Delete(ctx, ref)
}

// errNumbersExhausted: every number of the range is taken.
var errNumbersExhausted = errors.New("numeric id range exhausted")

// numberHoldWindow is how long a number handed out stays reserved in memory:
// longer than the cache takes to show the status that records it, after
// which the cache index keeps it taken.
const numberHoldWindow = 30 * time.Second

// numberProbeLimit bounds the index lookups of a pick before it falls back to
// one scan of every claimed value.
const numberProbeLimit = 64

// numberPool hands out generated numeric ids. Two rooms reconciled at the same
// time could otherwise both pick a number before the cache shows either
// choice.
type numberPool struct {
	mu   sync.Mutex
	held map[uint64]numberHold
}

type numberHold struct {
	uid types.UID
	at  time.Time
}

func newNumberPool() *numberPool { return &numberPool{held: map[uint64]numberHold{}} }

// pick returns a number of [lo, hi] for the room uid that taken reports free
// and that is not held for another room. Candidates start at a point derived
// from uid and go up, wrapping around, so that rooms created together do not
// all try the same lowest numbers, and a room asking again (its status write
// failed) gets the same number. After numberProbeLimit lookups, claimed
// returns every value in use and the rest of the range is scanned once.
func (p *numberPool) pick(lo, hi uint64, uid types.UID, now time.Time,
	taken func(string) (bool, error), claimed func() (map[string]bool, error)) (string, error) {
	if lo > hi {
		return "", errNumbersExhausted
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, h := range p.held {
		if now.Sub(h.at) > numberHoldWindow {
			delete(p.held, n)
		}
	}
	// tryTake holds n for uid if taken reports it free.
	tryTake := func(n uint64) (string, bool, error) {
		t, err := taken(formatNumericID(n))
		if err != nil || t {
			return "", false, err
		}
		p.held[n] = numberHold{uid: uid, at: now}
		return formatNumericID(n), true, nil
	}
	for n, h := range p.held {
		if h.uid != uid {
			continue
		}
		delete(p.held, n)
		if n < lo || n > hi {
			continue
		}
		if id, ok, err := tryTake(n); err != nil || ok {
			return id, err
		}
	}

	size := hi - lo + 1 // the configured range is checked to stay far from overflow
	start := uidHash(uid) % size
	heldByOther := func(n uint64) bool {
		h, ok := p.held[n]
		return ok && h.uid != uid
	}
	probes := min(size, numberProbeLimit)
	for i := uint64(0); i < probes; i++ {
		n := lo + (start+i)%size
		if heldByOther(n) {
			continue
		}
		if id, ok, err := tryTake(n); err != nil || ok {
			return id, err
		}
	}
	if probes == size {
		return "", errNumbersExhausted
	}
	set, err := claimed()
	if err != nil {
		return "", err
	}
	// Ends at the first free number: at most one step per claimed or held value.
	for i := probes; i < size; i++ {
		n := lo + (start+i)%size
		if heldByOther(n) || set[formatNumericID(n)] {
			continue
		}
		p.held[n] = numberHold{uid: uid, at: now}
		return formatNumericID(n), nil
	}
	return "", errNumbersExhausted
}

// release forgets the numbers held for uid.
func (p *numberPool) release(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, h := range p.held {
		if h.uid == uid {
			delete(p.held, n)
		}
	}
}

func formatNumericID(n uint64) string { return strconv.FormatUint(n, 10) }

// pinRedactedError carries an error whose text had the room's PINs removed;
// the original stays reachable for errors.Is and apierrors checks.
type pinRedactedError struct {
	msg string
	err error
}

func (e *pinRedactedError) Error() string { return e.msg }
func (e *pinRedactedError) Unwrap() error { return e.err }
