package controller

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// countsWriteInterval is the shortest time between two status writes of one
// object while only its counts change. A burst of users into one entity makes
// a pass of its pools and of the entity every few milliseconds; the readers of
// those counts (people, dashboards, kubectl get) need them a few times a
// second, not once per pass. Everything else (a new generation, a condition
// changing, a deletion) is written at once.
const countsWriteInterval = 500 * time.Millisecond

// countsWrites remembers when each object's counts were last written, so that
// a busy object's next write of counts alone waits for the interval.
type countsWrites struct {
	mu   sync.Mutex
	last map[types.NamespacedName]time.Time
}

// wait returns how long a write of key's counts should wait: 0 to write now.
func (c *countsWrites) wait(key types.NamespacedName, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, ok := c.last[key]
	if !ok {
		return 0
	}
	return max(last.Add(countsWriteInterval).Sub(now), 0)
}

// wrote records a status write of key.
func (c *countsWrites) wrote(key types.NamespacedName, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[types.NamespacedName]time.Time{}
	}
	// Forget the objects written long ago, so the map holds only busy ones.
	for k, t := range c.last {
		if now.Sub(t) > countsWriteInterval {
			delete(c.last, k)
		}
	}
	c.last[key] = now
}
