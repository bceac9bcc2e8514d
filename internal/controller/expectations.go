package controller

import (
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// writeExpectations remembers the status writes a pool's last pass made, until
// the shared cache has observed them (the ReplicaSet controller's
// "expectations"). A pass that ran on a cache still missing them would count a
// just-licensed user as unlicensed and hand its license to a second user, so
// the pool is not reconciled again until they arrive.
//
// After a start, the users a live list showed are expected too
// (primeAfterStart): the cache lists pools and users separately, and must
// not count a pool against users older than the pool.
type writeExpectations struct {
	mu      sync.Mutex
	pending map[types.NamespacedName]*poolWrites
}

type poolWrites struct {
	since time.Time
	// objects maps an object to the resourceVersion our write produced.
	objects map[types.NamespacedName]uint64
}

func newWriteExpectations() *writeExpectations {
	return &writeExpectations{pending: map[types.NamespacedName]*poolWrites{}}
}

// expect records that obj was written for pool and now has obj's resourceVersion.
func (e *writeExpectations) expect(pool types.NamespacedName, obj client.Object, now time.Time) {
	rv, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.pending[pool]
	if w == nil {
		w = &poolWrites{since: now, objects: map[types.NamespacedName]uint64{}}
		e.pending[pool] = w
	}
	w.objects[client.ObjectKeyFromObject(obj)] = rv
}

// satisfied reports whether every write expected for pool is visible through
// lookup (which reads the cache), forgetting the ones that are. Expectations
// older than timeout are dropped so a lost event cannot block a pool forever.
func (e *writeExpectations) satisfied(pool types.NamespacedName, now time.Time, timeout time.Duration,
	lookup func(types.NamespacedName) (resourceVersion string, found bool)) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.pending[pool]
	if w == nil {
		return true
	}
	if now.Sub(w.since) > timeout {
		delete(e.pending, pool)
		return true
	}
	for key, want := range w.objects {
		rv, found := lookup(key)
		if !found {
			delete(w.objects, key) // deleted since: nothing left to count
			continue
		}
		// resourceVersions are opaque in general but are etcd revisions on every
		// supported API server; a newer one means our write was seen too.
		if have, err := strconv.ParseUint(rv, 10, 64); err != nil || have >= want {
			delete(w.objects, key)
		}
	}
	if len(w.objects) == 0 {
		delete(e.pending, pool)
		return true
	}
	return false
}
