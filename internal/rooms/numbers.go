package rooms

import (
	"errors"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// ErrNumbersExhausted: every number of the range is taken.
var ErrNumbersExhausted = errors.New("numeric id range exhausted")

// numberHoldWindow is how long a number handed out stays reserved in memory:
// longer than the cache takes to show the status that records it, after
// which the cache index keeps it taken. The claim in the API server is what
// makes a number the room's; the hold only keeps two rooms of this process
// from trying the same number at once.
const numberHoldWindow = 30 * time.Second

// numberProbeLimit bounds the index lookups of a pick before it falls back to
// one scan of every claimed value.
const numberProbeLimit = 64

// NumberPool hands out generated numeric ids. Two rooms reconciled at the same
// time could otherwise both pick a number before the cache shows either
// choice.
type NumberPool struct {
	mu   sync.Mutex
	held map[uint64]numberHold
}

type numberHold struct {
	uid types.UID
	at  time.Time
}

// NewNumberPool returns an empty pool.
func NewNumberPool() *NumberPool { return &NumberPool{held: map[uint64]numberHold{}} }

// Pick returns a number of [lo, hi] for the room uid that taken reports free
// and that is not held for another room. Candidates start at a point derived
// from uid and go up, wrapping around, so that rooms created together do not
// all try the same lowest numbers, and a room asking again (its status write
// failed) gets the same number. After numberProbeLimit lookups, claimed
// returns every value in use and the rest of the range is scanned once.
func (p *NumberPool) Pick(lo, hi uint64, uid types.UID, now time.Time,
	taken func(string) (bool, error), claimed func() (map[string]bool, error)) (string, error) {
	if lo > hi {
		return "", ErrNumbersExhausted
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
		t, err := taken(FormatNumericID(n))
		if err != nil || t {
			return "", false, err
		}
		p.held[n] = numberHold{uid: uid, at: now}
		return FormatNumericID(n), true, nil
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
	start := UIDHash(uid) % size
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
		return "", ErrNumbersExhausted
	}
	set, err := claimed()
	if err != nil {
		return "", err
	}
	// Ends at the first free number: at most one step per claimed or held value.
	for i := probes; i < size; i++ {
		n := lo + (start+i)%size
		if heldByOther(n) || set[FormatNumericID(n)] {
			continue
		}
		p.held[n] = numberHold{uid: uid, at: now}
		return FormatNumericID(n), nil
	}
	return "", ErrNumbersExhausted
}

// Release forgets the numbers held for uid.
func (p *NumberPool) Release(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, h := range p.held {
		if h.uid == uid {
			delete(p.held, n)
		}
	}
}

// FormatNumericID writes a number as a dial string.
func FormatNumericID(n uint64) string { return strconv.FormatUint(n, 10) }

// UIDHash is a stable hash of a UID, to spread rooms over ranges and intervals.
func UIDHash(uid types.UID) uint64 {
	h := fnv.New64a()
	h.Write([]byte(uid))
	return h.Sum64()
}
