// Package embedded is the backend for a platform whose room registry is the
// operator itself: every room is described completely by its VMR object, and
// the VMR status is the only record of it. There is no external store to
// create rooms in, to look them up in or to drift away from the spec.
//
// The package exists so that the VMR controller runs the same way whatever the
// platform: it provisions, records a reference, checks for drift and deletes,
// and with this backend each of those steps is answered without any I/O. The
// answers are chosen so that the controller's safety nets stay correct:
//
//   - Create returns the reference "embedded:" + key, derived from the room's
//     key alone, so that creating twice yields the same reference (and the
//     existing room, all in Kubernetes, already matches).
//   - Find never finds anything: nothing outside Kubernetes can hold a room
//     created by an earlier pass, so there is nothing to recover from.
//   - Get returns a nil room for one of its own references, meaning "no
//     external state to compare": the drift check has nothing to repair.
//     For any other reference (one recorded by another backend before the
//     platform switched to this one) it returns ErrNotFound, so the controller
//     creates the room here and records the new reference.
//   - Update and Delete succeed: a room that never left Kubernetes changes and
//     goes with its VMR.
//
// Every call honours its context like a remote backend would, so a caller's
// deadline behaves the same with either.
package embedded

import (
	"context"
	"fmt"
	"strings"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/metrics"
)

// RefPrefix starts every reference this backend hands out.
const RefPrefix = "embedded:"

// Backend is the embedded room registry. It holds no state and is safe for
// concurrent use.
type Backend struct{}

var _ backend.Backend = (*Backend)(nil)

// New returns the embedded backend.
func New() *Backend { return &Backend{} }

// Name implements backend.Backend.
func (*Backend) Name() string { return name }

const name = "embedded"

// Find implements backend.Backend. It always reports ErrNotFound: the VMR
// status is the record, and no room exists anywhere else to be adopted.
func (*Backend) Find(ctx context.Context, key string) (_ string, _ *backend.Room, err error) {
	defer func() { metrics.BackendCall(name, metrics.OpFind, err) }()
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	return "", nil, fmt.Errorf("embedded: room %q is kept nowhere but in Kubernetes: %w", key, backend.ErrNotFound)
}

// Get implements backend.Backend. A nil room with a nil error means the room
// exists and there is no external state to compare it with, so it always
// matches what is desired.
func (*Backend) Get(ctx context.Context, ref, key string) (_ *backend.Room, err error) {
	defer func() { metrics.BackendCall(name, metrics.OpGet, err) }()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, checkRef(ref, key)
}

// Create implements backend.Backend. The reference depends on the key only, so
// a repeated creation returns the same reference, as the interface requires of
// a room that already exists with our key.
func (*Backend) Create(ctx context.Context, room backend.Room) (_ string, err error) {
	defer func() { metrics.BackendCall(name, metrics.OpCreate, err) }()
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if room.Key == "" {
		return "", fmt.Errorf("embedded: room %q has no key", room.Name)
	}
	return RefPrefix + room.Key, nil
}

// Update implements backend.Backend: there is nothing to change outside
// Kubernetes. A reference made by another backend is reported as ErrNotFound,
// as Get does, so that the room is created here instead.
func (*Backend) Update(ctx context.Context, ref string, room backend.Room) (err error) {
	defer func() { metrics.BackendCall(name, metrics.OpUpdate, err) }()
	if err := ctx.Err(); err != nil {
		return err
	}
	return checkRef(ref, room.Key)
}

// Delete implements backend.Backend. It succeeds whatever the reference:
// deleting a room that is gone is success, and an embedded room goes with its
// VMR.
func (*Backend) Delete(ctx context.Context, _, _ string) (err error) {
	defer func() { metrics.BackendCall(name, metrics.OpDelete, err) }()
	return ctx.Err()
}

// Release implements backend.Backend: nothing is kept outside Kubernetes.
func (*Backend) Release(ctx context.Context, _, _ string) (err error) {
	defer func() { metrics.BackendCall(name, metrics.OpRelease, err) }()
	return ctx.Err()
}

// ListTagged implements backend.Backend: no room is kept outside Kubernetes,
// so none can outlive its VMR.
func (*Backend) ListTagged(ctx context.Context, _ string) (_ []backend.Tagged, err error) {
	defer func() { metrics.BackendCall(name, metrics.OpListTagged, err) }()
	return nil, ctx.Err()
}

// checkRef reports a reference made by another backend as ErrNotFound, and
// one of this backend made for another key (a status copied from another
// room) as ErrConflict.
func checkRef(ref, key string) error {
	own, ok := strings.CutPrefix(ref, RefPrefix)
	switch {
	case !ok || own == "":
		return fmt.Errorf("embedded: reference %q was not made by this backend: %w", ref, backend.ErrNotFound)
	case own != key:
		return fmt.Errorf("%w: embedded: reference %q names the room of key %q, not %q", backend.ErrConflict, ref, own, key)
	}
	return nil
}
