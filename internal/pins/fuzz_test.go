package pins

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// acceptable is a second, independently written statement of the PIN rules
// that the fuzz targets hold ValidatePIN to.
func acceptable(pin string) bool {
	if len(pin) < MinLength || len(pin) > MaxLength {
		return false
	}
	if strings.Trim(pin, "0123456789") != "" {
		return false
	}
	if strings.Count(pin, pin[:1]) == len(pin) {
		return false
	}
	return !strings.Contains("0123456789", pin) && !strings.Contains("9876543210", pin)
}

var fixedMessages, fixedText = catalog(), catalogText()

// checkNoPIN fails when an error is not one of the fixed messages or shows one
// of the given PINs. A PIN of four or more characters may only appear by
// coincidence with the fixed wording (an input such as "must" or "host"); a
// PIN of four or more digits never can, as no message holds four digits in a
// row.
func checkNoPIN(t *testing.T, errs field.ErrorList, pins ...string) {
	t.Helper()
	for _, e := range errs {
		if !fixedMessages[e.Error()] {
			t.Fatalf("error %q is not one of the fixed messages", e.Error())
		}
		for _, r := range renderings(field.ErrorList{e}) {
			for _, p := range pins {
				if len(p) >= 4 && strings.Contains(r, p) && (allDigits(p) || !strings.Contains(fixedText, p)) {
					t.Fatalf("rendering %q contains the input", r)
				}
			}
		}
	}
}

func FuzzValidatePIN(f *testing.F) {
	for _, s := range []string{
		"", "5", "582", "5821", "8901", "0987", "1234", "4321", "0000", "7777777",
		"0123456789", "9876543210", "12345678901234567890", "58210493761028374659",
		"582104937610283746591", "5821\n", " 5821", "+5821", "\uff15\uff18\uff12\uff11",
		"58\xff21", "must", "Invalid value",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pin string) {
		errs := ValidatePIN(hostPath, pin)
		if ok := len(errs) == 0; ok != acceptable(pin) {
			t.Fatalf("accepted=%v, but the rules say %v", ok, acceptable(pin))
		}
		if len(errs) > 1 {
			t.Fatalf("%d errors for one PIN, want at most one", len(errs))
		}
		for _, e := range errs {
			if e.Field != hostPath.String() || e.Type != field.ErrorTypeInvalid || e.BadValue != omit {
				t.Fatalf("error %#v: want Invalid at %s with the value omitted", *e, hostPath)
			}
		}
		checkNoPIN(t, errs, pin)
	})
}

func FuzzValidatePair(f *testing.F) {
	for _, s := range []struct {
		host, guest string
		allowGuests bool
	}{
		{"", "", false}, {"", "", true},
		{"5821", "", true}, {"5821", "90071", true}, {"5821", "5821", false},
		{"", "5821", false}, {"", "5821", true}, {"1111", "1111", true},
		{"5821\n", "5821", true}, {"1234", "", false}, {"58", "", true},
	} {
		f.Add(s.host, s.guest, s.allowGuests)
	}
	f.Fuzz(func(t *testing.T, host, guest string, allowGuests bool) {
		errs := ValidatePair(hostPath, guestPath, host, guest, allowGuests, allowGuestsPath)

		want := (host == "" || acceptable(host)) &&
			(guest == "" || acceptable(guest)) &&
			(guest == "" || host != "") &&
			(!allowGuests || host != "") &&
			(guest == "" || guest != host)
		if ok := len(errs) == 0; ok != want {
			t.Fatalf("accepted=%v, but the rules say %v", ok, want)
		}

		var atHost, atGuest, atAllow int
		for _, e := range errs {
			switch e.Field {
			case hostPath.String():
				atHost++
			case guestPath.String():
				atGuest++
			case allowGuestsPath.String():
				atAllow++
			default:
				t.Fatalf("error at unexpected path %s", e.Field)
			}
		}
		if (atAllow == 1) != (allowGuests && host == "") || atAllow > 1 {
			t.Fatalf("%d errors at %s", atAllow, allowGuestsPath)
		}
		if atHost > 1 || atGuest > 2 {
			t.Fatalf("%d errors at host, %d at guest", atHost, atGuest)
		}
		if host != "" && (atHost == 0) != acceptable(host) {
			t.Fatalf("host PIN errors do not match its own rules")
		}
		checkNoPIN(t, errs, host, guest)
	})
}
