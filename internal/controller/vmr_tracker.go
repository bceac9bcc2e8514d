package controller

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/rooms"
)

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
	dial := room.DialStrings()
	put(strconv.Itoa(len(dial)))
	for _, a := range dial {
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

// driftSpread is a fixed fraction of interval for each uid.
func driftSpread(uid types.UID, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return time.Duration(rooms.UIDHash(uid) % uint64(interval))
}
