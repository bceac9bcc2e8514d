// Package backend defines what the VMR controller needs from a conferencing
// platform's room registry, so that the controller does not know which platform
// it talks to. Implementations live in sub-packages (embedded, pexip).
//
// Every call is idempotent from the controller's point of view: creating a room
// that already exists with our key is not an error (the existing room is
// returned), deleting a room that is gone is success. Every call takes a context
// and implementations bound each request with their own timeout.
//
// A reference is never trusted on its own: every call that acts on one also
// takes the room's key and checks that the room at the reference carries it.
// After a backup of the platform is restored, or the operator is pointed at
// another platform, a recorded reference can name somebody else's room.
package backend

import (
	"context"
	"errors"
	"slices"
)

// ErrNotFound is returned by Get when the room does not exist in the backend.
var ErrNotFound = errors.New("room not found in backend")

// ErrConflict is returned when a room with the same name or a dial string of
// the room exists in the backend and does not carry our key, or when the room
// at a reference carries another key: it belongs to someone else and is never
// adopted, changed or deleted.
var ErrConflict = errors.New("room exists in backend and was not created by the operator")

// Room is the desired or observed state of one permanent virtual meeting room.
type Room struct {
	// Key identifies the room as ours; stored in the backend room (Pexip: tag,
	// in the installation's scope). It is derived from the VMR's UID, so it
	// is known before the room exists. A room read back that carries its key
	// only in the form of an earlier release reads with an empty Key, so
	// that comparing it with the desired room calls for an Update, which
	// rewrites it.
	Key string
	// Name is the unique room name in the backend, as participants see it.
	Name        string
	Description string
	// NumericID is the dial-in number. A backend stores it as one dial
	// string among the others, and reports every dial string of a room it
	// reads in Aliases, with NumericID empty: the kind of a dial string is
	// the operator's business, not the platform's.
	NumericID string
	// Aliases are the other dial strings (SIP URI user@domain, extra
	// aliases), lowercase.
	Aliases          []string
	HostPIN          string
	GuestPIN         string
	AllowGuests      bool
	ParticipantLimit *int32
}

// DialStrings are every string that dials the room, sorted, without
// duplicates: the numeric id and the aliases.
func (r Room) DialStrings() []string {
	out := make([]string, 0, len(r.Aliases)+1)
	if r.NumericID != "" {
		out = append(out, r.NumericID)
	}
	for _, a := range r.Aliases {
		if a != "" {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Tagged is a room found by the prefix of its key.
type Tagged struct {
	Ref string
	Key string
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
	// for a reference another backend made. A room there that does not
	// carry key is reported with an error wrapping ErrConflict.
	Get(ctx context.Context, ref, key string) (*Room, error)
	// Create makes the room exist as described and returns its reference.
	// When a room with room.Key already exists (an earlier call's answer was
	// lost, or its caller crashed before recording the reference) it makes
	// that room match room and returns its reference, so that callers need
	// no lookup of their own first. When a room with the same name or one
	// of its dial strings exists without our key it returns an error
	// wrapping ErrConflict and leaves nothing of room in the backend: a
	// room that cannot be had whole is not dialable at all.
	Create(ctx context.Context, room Room) (ref string, err error)
	// Update makes the room at ref match room (drift repair, spec changes);
	// ErrNotFound as for Get, and ErrConflict, without any write, when the
	// room at ref does not carry room.Key.
	Update(ctx context.Context, ref string, room Room) error
	// Delete removes the room at ref if it carries key; a room that is
	// already gone, or a reference another backend made, is success. A
	// room at ref with another key is left alone and reported with an
	// error wrapping ErrConflict.
	Delete(ctx context.Context, ref, key string) error
	// Release hands the room at ref over to whoever manages the platform by
	// hand: it stops carrying key (it keeps a trace of it), so that no sweep
	// takes it for an orphan once its VMR is gone (deletionPolicy Retain). A
	// room gone is success; one with another key is ErrConflict.
	Release(ctx context.Context, ref, key string) error
	// ListTagged returns every room of this installation whose key starts
	// with prefix, in one paged listing: the sweep of rooms whose VMR is
	// gone. Rooms of other installations sharing the backend are never
	// listed.
	ListTagged(ctx context.Context, prefix string) ([]Tagged, error)
}
