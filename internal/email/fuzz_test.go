package email

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzCheck: Canonical is idempotent and its result is NFC and lower case;
// whatever Check accepts is its own canonical form and holds no invisible
// character; Same is what comparing canonical forms says.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"anne@rennes.example", "Anne@Rennes.example", "he\u0301le\u0300ne@x.example",
		"anne\u200b@x.example", " a@b.c ", "\u0130stanbul@x.example", "\u212a@x.example", "\xff@x"} {
		f.Add(s, strings.ToUpper(s))
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		c := Canonical(a)
		if Canonical(c) != c {
			t.Fatalf("Canonical is not idempotent: %q -> %q -> %q", a, c, Canonical(c))
		}
		if utf8.ValidString(c) && !norm.NFC.IsNormalString(c) {
			t.Fatalf("Canonical(%q) = %q is not NFC", a, c)
		}
		if err := Check(a); err == nil {
			if c != a {
				t.Fatalf("Check accepted %q whose canonical form is %q", a, c)
			}
			for _, r := range a {
				if isInvisible(r) {
					t.Fatalf("Check accepted %q with invisible %U", a, r)
				}
			}
		}
		if Same(a, b) != (Canonical(a) == Canonical(b)) || Same(a, b) != Same(b, a) {
			t.Fatalf("Same(%q, %q) is not the comparison of canonical forms", a, b)
		}
	})
}
