package email

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // substring of the error; "" for none
	}{
		{"plain", "anne.le-guen@rennes.example", ""},
		{"accented, NFC", "h\u00e9l\u00e8ne@mairie.example", ""},
		{"accented, NFD", "he\u0301le\u0300ne@mairie.example", "NFC"},
		{"upper case ASCII", "Anne@rennes.example", "lower case"},
		{"upper case domain", "anne@Rennes.example", "lower case"},
		{"upper case non-ASCII", "\u00c9lise@mairie.example", "lower case"},
		{"leading space", " anne@rennes.example", "a space"},
		{"trailing newline", "anne@rennes.example\n", "a space"},
		{"no-break space", "anne\u00a0@rennes.example", "a space"},
		{"zero-width space", "anne\u200b@rennes.example", "invisible"},
		{"zero-width joiner", "an\u200dne@rennes.example", "invisible"},
		{"right-to-left override", "anne@\u202erennes.example", "invisible"},
		{"byte order mark", "\ufeffanne@rennes.example", "invisible"},
		{"soft hyphen", "an\u00adne@rennes.example", "invisible"},
		{"Hangul filler", "anne\u3164@rennes.example", "invisible"},
		{"control", "anne\x07@rennes.example", "control"},
		{"NUL", "anne\x00@rennes.example", "control"},
		{"invalid UTF-8", "anne\xff@rennes.example", "UTF-8"},
		{"private use", "anne\ue000@rennes.example", "invisible"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.in)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check(%q) = %v, want nil", tc.in, err)
			case tc.want != "" && err == nil:
				t.Fatalf("Check(%q) = nil, want an error with %q", tc.in, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Check(%q) = %v, want %q in it", tc.in, err, tc.want)
			}
		})
	}
}

func TestCanonicalAndSame(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"anne@rennes.example", "anne@rennes.example"},
		{"  Anne@Rennes.EXAMPLE\t", "anne@rennes.example"},
		{"He\u0301le\u0300ne@Mairie.example", "h\u00e9l\u00e8ne@mairie.example"},
		{"\u212aevin@x.example", "kevin@x.example"}, // Kelvin sign: NFC makes it K
	} {
		if got := Canonical(tc.in); got != tc.want {
			t.Errorf("Canonical(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !Same(tc.in, tc.want) {
			t.Errorf("Same(%q, %q) = false", tc.in, tc.want)
		}
	}
	if Same("anne@rennes.example", "anne@brest.example") {
		t.Error("two addresses are not the same")
	}
}
