package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/rooms"
)

// roomSweeper removes, at each drift interval, the backend rooms that carry
// the operator's key and whose VMR no longer exists: a create that timed out
// on the client and committed on the node after its VMR was deleted (its
// finalizer found nothing by key then). Untagged and foreign rooms are never
// touched: only keys of the form the operator makes are considered, and each
// removal checks the key again at the room's id.
//
// One sweep is one paged listing of the rooms by key prefix, one read of the
// cached VMRs, and, only when orphans seem to be there, one live list of the
// VMRs (a room created by another replica a moment ago must not be taken for
// an orphan because this cache has not seen its VMR yet).
type roomSweeper struct {
	r        *VMRReconciler
	interval time.Duration
}

// NeedLeaderElection: one replica sweeps.
func (s *roomSweeper) NeedLeaderElection() bool { return true }

// Start sweeps every interval until ctx ends.
func (s *roomSweeper) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("vmr-sweep")
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		removed, err := s.sweep(ctx)
		if err != nil {
			logger.Error(err, "Cannot sweep the backend for rooms whose VMR is gone")
			continue
		}
		if removed > 0 {
			logger.Info("Removed backend rooms whose VMR is gone", "rooms", removed)
		}
	}
}

// sweep removes the orphaned rooms and returns how many it removed.
func (s *roomSweeper) sweep(ctx context.Context) (int, error) {
	r := s.r
	lctx, cancel := context.WithTimeout(ctx, r.BackendTimeout)
	tagged, err := r.Backend.ListTagged(lctx, rooms.KeyPrefix)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("cannot list the operator's rooms: %w", err)
	}
	if len(tagged) == 0 {
		return 0, nil
	}
	orphans, err := s.orphans(ctx, tagged, r.List)
	if err != nil || len(orphans) == 0 {
		return 0, err
	}
	if orphans, err = s.orphans(ctx, orphans, r.reader().List); err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, o := range orphans {
		err := r.backendDelete(ctx, o.Ref, o.Key)
		switch {
		case errors.Is(err, backend.ErrConflict):
			continue // changed hands since the listing
		case err != nil:
			errs = append(errs, fmt.Errorf("cannot remove room %s: %w", o.Ref, err))
			continue
		}
		log.FromContext(ctx).Info("Removed a backend room whose VMR is gone", "backendRef", o.Ref, "key", o.Key)
		removed++
	}
	return removed, errors.Join(errs...)
}

// orphans keeps the rooms whose key names no VMR that list returns.
func (s *roomSweeper) orphans(ctx context.Context, tagged []backend.Tagged,
	list func(context.Context, client.ObjectList, ...client.ListOption) error) ([]backend.Tagged, error) {
	vmrs := &v1.VMRList{}
	if err := list(ctx, vmrs); err != nil {
		return nil, fmt.Errorf("cannot list VMRs: %w", err)
	}
	live := make(map[types.UID]bool, len(vmrs.Items))
	for i := range vmrs.Items {
		live[vmrs.Items[i].UID] = true
	}
	var out []backend.Tagged
	for _, t := range tagged {
		if uid, ok := rooms.UIDOfKey(t.Key); ok && !live[uid] {
			out = append(out, t)
		}
	}
	return out, nil
}
