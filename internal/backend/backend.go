// Package backend defines what the VMR controller needs from a conferencing
// platform's room registry, so that the controller does not know which platform
// it talks to. Implementations live in sub-packages (embedded, pexip).
//
// Every call is idempotent from the controller's point of view: creating a room
// that already exists with our key is not an error (the existing room is
// returned), deleting a room that is gone is success. Every call takes a context
// and implementations bound each request with their own timeout.
package backend

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Get when the room does not exist in the backend.
var ErrNotFound = errors.New("room not found in backend")

// ErrConflict is returned by Create when a room with the same name, numeric id
// or alias exists in the backend and does not carry our key: it belongs to
// someone else and is never adopted.
var ErrConflict = errors.New("room exists in backend and was not created by the operator")

// Room is the desired or observed state of one permanent virtual meeting room.
type Room struct {
	// Key identifies the room as ours; stored in the backend room (Pexip: tag).
	// It is derived from the VMR's UID, so it is known before the room exists.
	Key string
	// Name is the unique room name in the backend (namespace/name of the VMR).
	Name        string
	Description string
	// NumericID is the dial-in number; stored as one of the room's aliases too.
	NumericID string
	// Aliases are the extra dial strings (SIP/URI aliases), lowercase.
	Aliases          []string
	HostPIN          string
	GuestPIN         string
	AllowGuests      bool
	ParticipantLimit *int32
}

// Backend is a registry of permanent rooms.
type Backend interface {
	// Name names the implementation for logs, metrics and status ("embedded", "pexip").
	Name() string
	// Find returns the room carrying key, or ErrNotFound. It is how the room
	// of a VMR deleted before its reference was recorded (a crash right
	// after Create) is found and removed.
	Find(ctx context.Context, key string) (ref string, room *Room, err error)
	// Get returns the room with the given reference, or ErrNotFound; also
	// for a reference another backend made.
	Get(ctx context.Context, ref string) (*Room, error)
	// Create makes the room exist as described and returns its reference.
	// When a room with room.Key already exists (an earlier call's answer was
	// lost, or its caller crashed before recording the reference) it makes
	// that room match room and returns its reference, so that callers need
	// no lookup of their own first. When a room with the same name, numeric
	// id or an alias exists without our key it returns an error wrapping
	// ErrConflict, and the reference of our room if it was created anyway.
	Create(ctx context.Context, room Room) (ref string, err error)
	// Update makes the room at ref match room (drift repair, spec changes);
	// ErrNotFound as for Get.
	Update(ctx context.Context, ref string, room Room) error
	// Delete removes the room at ref; a room that is already gone, or a
	// reference another backend made, is success.
	Delete(ctx context.Context, ref string) error
}
