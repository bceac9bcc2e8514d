package metrics

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	v1 "visio.dev/operator/api/v1alpha1"
)

// rooms remembers, per room, when this process first saw the generation it is
// provisioning and the last generation whose provisioning was observed.
var rooms = struct {
	sync.Mutex
	m map[types.NamespacedName]*roomClock
}{m: map[types.NamespacedName]*roomClock{}}

type roomClock struct {
	uid        types.UID // a room deleted and created again is another room
	generation int64     // the generation asked for
	since      time.Time // when this process first saw it, zero if not seen
	observed   int64     // the last generation whose duration was observed
}

// readyAt: Ready at the room's current generation.
func readyAt(vmr *v1.VMR) bool {
	c := meta.FindStatusCondition(vmr.Status.Conditions, v1.ReadyCondition)
	return c != nil && c.Status == "True" && c.ObservedGeneration == vmr.Generation
}

// clockOf returns the clock of vmr, a new one for a room not seen before.
// The caller holds rooms' lock.
func clockOf(vmr *v1.VMR) *roomClock {
	key := types.NamespacedName{Namespace: vmr.Namespace, Name: vmr.Name}
	c := rooms.m[key]
	if c == nil || c.uid != vmr.UID {
		c = &roomClock{uid: vmr.UID}
		rooms.m[key] = c
	}
	return c
}

// RoomSeen is called at the start of each pass of a room: a generation not yet
// Ready starts its clock, unless it already runs.
func RoomSeen(vmr *v1.VMR, now time.Time) {
	if readyAt(vmr) {
		return
	}
	rooms.Lock()
	defer rooms.Unlock()
	c := clockOf(vmr)
	if c.generation != vmr.Generation {
		c.generation, c.since = vmr.Generation, now
	}
}

// RoomStatusWritten is called once a pass has written the status of a room
// (orig is the room as the pass found it, vmr as it left it). When the room
// has just become Ready at its generation, the time since it was asked for is
// observed, once per room and generation:
//
//   - generation 1 (a new room): since its creationTimestamp, so that the
//     time spent before the operator ran (or while it restarted) counts;
//   - a later generation (its spec changed): since this process first saw
//     that generation. After a restart in the middle of such a change, the
//     clock starts at the restart: the API keeps no record of when a spec
//     changed.
//
// A room found Ready after a restart was observed by the process that made it
// Ready, and is not observed again.
func RoomStatusWritten(backendName string, orig, vmr *v1.VMR, now time.Time) {
	if !readyAt(vmr) || readyAt(orig) {
		return
	}
	rooms.Lock()
	defer rooms.Unlock()
	c := clockOf(vmr)
	if c.observed == vmr.Generation {
		return // a pass whose write was refused already observed it
	}
	since := vmr.CreationTimestamp.Time
	if vmr.Generation != 1 {
		if c.generation != vmr.Generation || c.since.IsZero() {
			return // never seen waiting: nothing to measure from
		}
		since = c.since
	}
	provisionDuration.WithLabelValues(backendName).Observe(max(now.Sub(since).Seconds(), 0))
	c.observed = vmr.Generation
	c.since = time.Time{}
}

// ForgetRoom drops what is remembered of a room that is gone.
func ForgetRoom(key types.NamespacedName) {
	rooms.Lock()
	defer rooms.Unlock()
	delete(rooms.m, key)
}
