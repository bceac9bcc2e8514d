// Package pins holds the rules for a room's host and guest PINs and generates
// PINs that follow them.
//
// PINs are secrets: they live only in the room's Secret. No error produced here
// carries a PIN, its length or any part of it, so errors can go to the API
// server, logs and the VMR status unfiltered.
package pins

import (
	"crypto/rand"
	"io"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Keys of the room's Secret.
const (
	HostPINKey  = "hostPin"
	GuestPINKey = "guestPin"
)

const (
	// MinLength and MaxLength bound a PIN's number of digits.
	MinLength = 4
	MaxLength = 20
	// DefaultLength is used by Generate when no length is asked for.
	DefaultLength = 6
)

// Error details. They name the rule broken and nothing of the value; tests
// hold them to containing no run of four digits, so that no PIN can be
// mistaken for part of a message.
const (
	msgNotDigits    = "must contain only the digits 0-9 (no spaces, signs or trailing newline)"
	msgLength       = "must be 4 to 20 digits"
	msgSameDigit    = "must not be all the same digit"
	msgConsecutive  = "must not be a run of consecutive digits"
	msgSameAsHost   = "must differ from the host PIN"
	msgGuestNoHost  = "a guest PIN needs a host PIN"
	msgGuestsNoHost = "allowGuests requires a host PIN, so that hosts and guests can be told apart"
)

// omit keeps the value out of field.Invalid's message; apimachinery prints
// "Invalid value: <detail>" for it instead of quoting the value.
var omit = field.OmitValueType{}

// ValidatePIN checks one PIN's own rules (length, digits only, not weak).
// An empty pin is reported as too short; callers for whom an empty value means
// "no PIN" use ValidatePair.
func ValidatePIN(path *field.Path, pin string) field.ErrorList {
	if !allDigits(pin) {
		return field.ErrorList{field.Invalid(path, omit, msgNotDigits)}
	}
	if len(pin) < MinLength || len(pin) > MaxLength {
		return field.ErrorList{field.Invalid(path, omit, msgLength)}
	}
	if sameDigit(pin) {
		return field.ErrorList{field.Invalid(path, omit, msgSameDigit)}
	}
	if consecutive(pin) {
		return field.ErrorList{field.Invalid(path, omit, msgConsecutive)}
	}
	return nil
}

// ValidatePair checks host and guest PINs together with allowGuests. An empty
// string means the PIN is absent. hostPath and guestPath are the paths to
// report for each PIN (e.g. field.NewPath("data").Key(HostPINKey)) and
// allowGuestsPath the path of the room's allowGuests setting.
func ValidatePair(hostPath, guestPath *field.Path, host, guest string, allowGuests bool, allowGuestsPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if host != "" {
		errs = append(errs, ValidatePIN(hostPath, host)...)
	}
	if guest != "" {
		errs = append(errs, ValidatePIN(guestPath, guest)...)
	}
	if host == "" {
		// Without a host PIN everyone joins as host, so a guest PIN would
		// grant nothing and a room open to guests could not tell them apart.
		if guest != "" {
			errs = append(errs, field.Required(hostPath, msgGuestNoHost))
		}
		if allowGuests {
			errs = append(errs, field.Invalid(allowGuestsPath, true, msgGuestsNoHost))
		}
	} else if guest == host {
		// Equal PINs would let every guest join as host.
		errs = append(errs, field.Invalid(guestPath, omit, msgSameAsHost))
	}
	return errs
}

// Generate returns a random host PIN and a different random guest PIN of the
// given length, both passing ValidatePIN. length 0 means DefaultLength; other
// values are clamped into MinLength..MaxLength. The error is that of the
// system's random source.
func Generate(length int) (host, guest string, err error) {
	return generate(rand.Reader, length)
}

// generate takes the random source as a parameter so tests can drive the
// rejection paths deterministically.
func generate(r io.Reader, length int) (host, guest string, err error) {
	switch {
	case length == 0:
		length = DefaultLength
	case length < MinLength:
		length = MinLength
	case length > MaxLength:
		length = MaxLength
	}
	if host, err = draw(r, length); err != nil {
		return "", "", err
	}
	for {
		if guest, err = draw(r, length); err != nil {
			return "", "", err
		}
		if guest != host {
			return host, guest, nil
		}
	}
}

// draw returns a uniformly random PIN of n digits that is not weak. Redrawing a
// weak PIN, rather than patching a digit, keeps every acceptable PIN equally
// likely.
func draw(r io.Reader, n int) (string, error) {
	pin := make([]byte, 0, n)
	buf := make([]byte, n)
	for {
		pin = pin[:0]
		for len(pin) < n {
			chunk := buf[:n-len(pin)]
			if _, err := io.ReadFull(r, chunk); err != nil {
				return "", err
			}
			for _, b := range chunk {
				// 256 is not a multiple of 10: keeping bytes 250 and above
				// would make the digits 0-5 more likely than 6-9.
				if b < 250 {
					pin = append(pin, '0'+b%10)
				}
			}
		}
		if !sameDigit(string(pin)) && !consecutive(string(pin)) {
			return string(pin), nil
		}
	}
}

// allDigits reports whether s holds only ASCII digits; other Unicode digits
// cannot be typed on a phone keypad and are refused.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// sameDigit reports whether s (at least two digits) is one digit repeated.
func sameDigit(s string) bool {
	for i := 1; i < len(s); i++ {
		if s[i] != s[0] {
			return false
		}
	}
	return true
}

// consecutive reports whether every digit of s is one more than the previous,
// or every digit one less. 9 is not followed by 0, so 8901 is not a run: it is
// not what people pick when they pick a lazy PIN.
func consecutive(s string) bool {
	up, down := true, true
	for i := 1; i < len(s); i++ {
		d := int(s[i]) - int(s[i-1])
		up = up && d == 1
		down = down && d == -1
	}
	return up || down
}
