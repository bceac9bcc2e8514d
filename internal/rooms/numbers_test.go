package rooms

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func never(string) (bool, error) { return false, nil }

func noClaims() (map[string]bool, error) { return map[string]bool{}, nil }

func TestNumericIDPickStaysInRangeUntilExhausted(t *testing.T) {
	p := NewNumberPool()
	now := time.Now()
	seen := map[string]bool{}
	for i := range 10 {
		n, err := p.Pick(1000, 1009, types.UID(fmt.Sprint("uid-", i)), now, never, noClaims)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		v, _ := strconv.Atoi(n)
		if v < 1000 || v > 1009 || seen[n] {
			t.Fatalf("pick %d = %s: out of range or repeated (%v)", i, n, seen)
		}
		seen[n] = true
	}
	if _, err := p.Pick(1000, 1009, "uid-late", now, never, noClaims); !errors.Is(err, ErrNumbersExhausted) {
		t.Fatalf("pick in a full range = %v; want ErrNumbersExhausted", err)
	}
}

func TestNumericIDPickSkipsTakenNumbers(t *testing.T) {
	taken := map[string]bool{}
	for n := 100000; n < 100090; n++ {
		taken[strconv.Itoa(n)] = true
	}
	lookups := 0
	isTaken := func(s string) (bool, error) { lookups++; return taken[s], nil }
	claimedCalls := 0
	claimed := func() (map[string]bool, error) { claimedCalls++; return taken, nil }
	p := NewNumberPool()
	for i := range 20 {
		n, err := p.Pick(100000, 100099, types.UID(fmt.Sprint("uid-", i)), time.Now(), isTaken, claimed)
		if i < 10 {
			if err != nil || taken[n] {
				t.Fatalf("pick %d = %q, %v; want a free number", i, n, err)
			}
			taken[n] = true // as the cache would show once the status is written
			continue
		}
		if !errors.Is(err, ErrNumbersExhausted) {
			t.Fatalf("pick %d = %q, %v; want ErrNumbersExhausted", i, n, err)
		}
	}
	if lookups > 20*numberProbeLimit {
		t.Errorf("%d index lookups for 20 picks; want at most %d each", lookups, numberProbeLimit)
	}
	if claimedCalls == 0 {
		t.Errorf("a nearly full range never fell back to one scan of the claimed values")
	}
}

func TestNumericIDPickIsStablePerRoomAndSpreadsRooms(t *testing.T) {
	p := NewNumberPool()
	now := time.Now()
	a1, _ := p.Pick(100000, 999999, "room-a", now, never, noClaims)
	a2, _ := p.Pick(100000, 999999, "room-a", now.Add(time.Second), never, noClaims)
	if a1 != a2 {
		t.Fatalf("same room got %s then %s; a retried pass must get its number back", a1, a2)
	}
	// A fresh process starts from the same point for the same room.
	b1, _ := NewNumberPool().Pick(100000, 999999, "room-b", now, never, noClaims)
	b2, _ := NewNumberPool().Pick(100000, 999999, "room-b", now, never, noClaims)
	if b1 != b2 {
		t.Fatalf("room-b got %s and %s from two pools; want a deterministic start", b1, b2)
	}
	// Rooms do not all start at the bottom of the range.
	low := 0
	for i := range 50 {
		n, _ := NewNumberPool().Pick(100000, 999999, types.UID(fmt.Sprint("spread-", i)), now, never, noClaims)
		if n == "100000" {
			low++
		}
	}
	if low > 1 {
		t.Errorf("%d of 50 rooms started at the lowest number", low)
	}
}

func TestNumericIDHoldExpires(t *testing.T) {
	p := NewNumberPool()
	now := time.Now()
	a, _ := p.Pick(1000, 1000, "room-a", now, never, noClaims)
	if _, err := p.Pick(1000, 1000, "room-b", now.Add(time.Second), never, noClaims); !errors.Is(err, ErrNumbersExhausted) {
		t.Fatalf("number held for room-a was handed to room-b: %v", err)
	}
	b, err := p.Pick(1000, 1000, "room-b", now.Add(numberHoldWindow+time.Second), never, noClaims)
	if err != nil || b != a {
		t.Fatalf("after the hold expired pick = %q, %v; want %s", b, err, a)
	}
	p.Release("room-b")
	if len(p.held) != 0 {
		t.Fatalf("release left %v", p.held)
	}
}

func TestNumericIDConcurrentPicksAreDistinct(t *testing.T) {
	p := NewNumberPool()
	const rooms = 500
	now := time.Now()
	got := make([]string, rooms)
	var wg sync.WaitGroup
	for i := range rooms {
		wg.Go(func() {
			// The cache shows none of the concurrent choices.
			n, err := p.Pick(100000, 100999, types.UID(fmt.Sprint("uid-", i)), now, never, noClaims)
			if err != nil {
				t.Errorf("pick: %v", err)
			}
			got[i] = n
		})
	}
	wg.Wait()
	slices.Sort(got)
	if d := slices.Compact(slices.Clone(got)); len(d) != rooms {
		t.Fatalf("%d distinct numbers for %d concurrent picks", len(d), rooms)
	}
}
