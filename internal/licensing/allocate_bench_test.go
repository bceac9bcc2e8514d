package licensing

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchPool builds a pool of n users resembling a busy organisation: nine in
// ten are active, half hold a license (a tenth of those have been
// deactivated), creation times spread over a year with second resolution and
// names in no particular order. It returns a capacity of about 80% of the
// active users, so most holders are kept, the free licenses go to part of the
// queue and the rest waits.
func benchPool(n int, shrink bool) (int32, []Claim) {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	claims := make([]Claim, n)
	wanting := 0
	holders := 0
	for i, p := range rng.Perm(n) {
		c := &claims[i]
		c.Name = fmt.Sprintf("user-%07d", p)
		c.CreatedAt = base.Add(time.Duration(rng.IntN(365*24*3600)) * time.Second)
		c.Wants = rng.IntN(10) != 0
		if rng.IntN(2) == 0 {
			t := c.CreatedAt.Add(time.Duration(rng.IntN(30*24*3600)) * time.Second)
			c.HeldSince = &t
			if c.Wants {
				holders++
			}
		}
		if c.Wants {
			wanting++
		}
	}
	if shrink {
		// The organisation cut its pool to 80% of the current holders.
		return int32(holders * 8 / 10), claims
	}
	return int32(wanting * 8 / 10), claims
}

func BenchmarkAllocate(b *testing.B) {
	for _, n := range []int{10, 1_000, 100_000} {
		capacity, claims := benchPool(n, false)
		now := base.Add(400 * 24 * time.Hour)
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Allocate(capacity, now, claims)
			}
		})
	}
}

// BenchmarkAllocateShrink covers the pass after a pool was cut below its
// holders, the one that also orders the holders.
func BenchmarkAllocateShrink(b *testing.B) {
	for _, n := range []int{10, 1_000, 100_000} {
		capacity, claims := benchPool(n, true)
		now := base.Add(400 * 24 * time.Hour)
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Allocate(capacity, now, claims)
			}
		})
	}
}
