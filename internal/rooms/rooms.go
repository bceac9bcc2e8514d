// Package rooms holds the pure logic of permanent rooms: how a VMR maps onto
// a backend room (its name, dial strings and fields), how rooms are compared,
// how numeric ids are handed out, and which of two claimants of a dial string
// keeps it. It does no I/O; the VMR controller gathers the inputs and acts on
// the answers.
package rooms

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"

	"visio.dev/operator/internal/backend"
)

// KeyPrefix starts the key of every room the operator creates: the sweep
// lists rooms by it.
const KeyPrefix = "visio-"

// MaxNameLength is the longest conference name Pexip accepts, in characters.
const MaxNameLength = 250

// Key marks the backend room as the VMR's. It derives from the UID, so it
// is known before the room exists and differs for a VMR recreated under the
// same name.
func Key(uid types.UID) string { return KeyPrefix + string(uid) }

// UIDOfKey returns the VMR UID a key was made from, if it is one of ours.
// A UID never holds ':', which a backend puts between an installation's
// scope and a key: "visio-x:visio-<uid>" is no key of ours.
func UIDOfKey(key string) (types.UID, bool) {
	uid, ok := strings.CutPrefix(key, KeyPrefix)
	return types.UID(uid), ok && uid != "" && !strings.Contains(uid, ":")
}

// Name is the backend room's name, which participants see: the VMR's display
// name followed by its numeric id, e.g. "Conseil municipal (100234)". The
// numeric id is unique across the platform, so the name is unique too (the
// backend requires it) and tells participants the number they dialled. A
// display name too long to fit is cut, with an ellipsis, so that the name
// stays within MaxNameLength characters.
func Name(displayName, numericID string) string {
	suffix := " (" + numericID + ")"
	room := MaxNameLength - utf8.RuneCountInString(suffix)
	displayName = strings.ToValidUTF8(strings.TrimSpace(displayName), "\uFFFD")
	if utf8.RuneCountInString(displayName) > room {
		r := []rune(displayName)
		displayName = strings.TrimSpace(string(r[:room-1])) + "…"
	}
	return displayName + suffix
}

// SIPAlias is the alias that the SIP URI sip:<numericId>@<domain> dials:
// Pexip matches the alias exactly as received, domain included.
func SIPAlias(numericID, sipDomain string) string {
	if sipDomain == "" || numericID == "" {
		return ""
	}
	return numericID + "@" + sipDomain
}

// Spec is what a VMR and its PINs declare of its room.
type Spec struct {
	UID              types.UID
	DisplayName      string
	Description      string
	NumericID        string
	Aliases          []string
	SIPDomain        string
	HostPIN          string
	GuestPIN         string
	AllowGuests      bool
	ParticipantLimit *int32
}

// Desired is the backend room a spec declares: every dial string it
// advertises (numeric id, SIP alias, aliases), its name, and its PINs. The
// guest PIN is sent only when guests are allowed: otherwise it admits
// nobody.
func Desired(s Spec) backend.Room {
	aliases := slices.Clone(s.Aliases)
	if sip := SIPAlias(s.NumericID, s.SIPDomain); sip != "" {
		aliases = append(aliases, sip)
	}
	room := backend.Room{
		Key:         Key(s.UID),
		Name:        Name(s.DisplayName, s.NumericID),
		Description: s.Description,
		NumericID:   s.NumericID,
		Aliases:     SortedAliases(aliases),
		HostPIN:     s.HostPIN,
		AllowGuests: s.AllowGuests,
	}
	if s.AllowGuests {
		room.GuestPIN = s.GuestPIN
	}
	if l := s.ParticipantLimit; l != nil {
		v := *l
		room.ParticipantLimit = &v
	}
	return room
}

// SortedAliases sorts and deduplicates aliases; nil when there are none.
func SortedAliases(aliases []string) []string {
	if len(aliases) == 0 {
		return nil
	}
	out := slices.Clone(aliases)
	slices.Sort(out)
	return slices.Compact(out)
}

// Diff names the fields in which have differs from want. It returns names
// only, so it can be logged: never a value. Dial strings are compared as a
// set: a backend does not say which one is the numeric id.
func Diff(want backend.Room, have *backend.Room) []string {
	if have == nil {
		return nil // nothing kept outside Kubernetes to compare
	}
	var diff []string
	add := func(differs bool, name string) {
		if differs {
			diff = append(diff, name)
		}
	}
	add(want.Key != have.Key, "key")
	add(want.Name != have.Name, "name")
	add(want.Description != have.Description, "description")
	add(!slices.Equal(want.DialStrings(), have.DialStrings()), "aliases")
	add(want.HostPIN != have.HostPIN, "hostPin")
	add(want.GuestPIN != have.GuestPIN, "guestPin")
	add(want.AllowGuests != have.AllowGuests, "allowGuests")
	add(!sameLimit(want.ParticipantLimit, have.ParticipantLimit), "participantLimit")
	return diff
}

func sameLimit(a, b *int32) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// ClaimName is the name of the object that claims a dial string for one
// room across the platform: derived from the dial string alone, so that two
// claimants create the same object and the API server lets exactly one
// succeed. Dial strings hold characters object names cannot ('@', '+', '_'),
// hence a hash, long enough (128 bits) that two dial strings never share it.
func ClaimName(dialString string) string {
	sum := sha256.Sum256([]byte(dialString))
	return "ds-" + hex.EncodeToString(sum[:16])
}

// Claimant is a room asking for a dial string, as the claim rule sees it.
type Claimant struct {
	// Provisioned: the room's backend room is recorded and dials by the
	// string (it is Ready with it, or was).
	Provisioned bool
}

// TakesOver reports whether claimant may take a dial string's claim from
// holder: only a room already provisioned with it, from one that is not (a
// claim made by a new room while a provisioned one had none yet, as after an
// upgrade from a release without claims). Otherwise the first to claim
// keeps it, so two rooms asking at the same instant end with exactly one
// holder.
func TakesOver(claimant, holder Claimant) bool {
	return claimant.Provisioned && !holder.Provisioned
}
