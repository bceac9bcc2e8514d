// Package email holds the one rule by which the operator stores and compares
// email addresses: the form identity providers send them in.
//
// The email of a PlatformUser is its RBAC subject, and the API server compares
// usernames byte for byte. Two spellings of one address (a trailing space, a
// decomposed "é", a zero-width space pasted with it, "Anne@" and "anne@") would
// be two people to RBAC, or one person twice to the operator. So an address is
// stored in one form only, and that form is what OIDC providers put in their
// tokens:
//
//   - trimmed, with no space, control or invisible (format) character
//     anywhere: these are refused, not silently removed, because a person
//     cannot see them and must know what was wrong with what they pasted;
//   - Unicode NFC, the normalisation of the web and of identity providers;
//   - lower case, local part included. RFC 5321 lets a mail server treat the
//     local part as case-sensitive, but no identity provider used here issues
//     two accounts that differ by case only, and the common ones (Keycloak,
//     the France Connect family, Entra ID) send the address lower-cased.
//     Requiring lower case rather than lowering it for comparison keeps one
//     rule for everyone: what is stored is what is compared and what RBAC
//     binds, with no second, case-folded form to keep in step.
package email

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Canonical is the form s is stored and compared in: trimmed, NFC, lower
// case. It does not remove invisible characters inside the address: Check
// refuses those.
func Canonical(s string) string {
	s = strings.TrimFunc(s, isInvisible)
	return norm.NFC.String(strings.ToLower(norm.NFC.String(s)))
}

// Same reports whether a and b are the same address under the rule.
func Same(a, b string) bool { return Canonical(a) == Canonical(b) }

// Check returns why s cannot be stored as an email address (nil when it can).
// Syntax beyond the characters (one "@", a dotted domain) is the schema's.
func Check(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for i, r := range s {
		if isInvisible(r) {
			return fmt.Errorf("contains %s (%U) at byte %d: remove spaces, control and invisible characters (often pasted with the address)",
				describe(r), r, i)
		}
	}
	if c := Canonical(s); c != s {
		if strings.ToLower(s) != s {
			return fmt.Errorf("must be lower case, as identity providers send it: %q", c)
		}
		return fmt.Errorf("must be in Unicode NFC form, as identity providers send it: %q", c)
	}
	return nil
}

// isInvisible: characters a person cannot see or tell apart from a space:
// spaces of every kind, controls, format characters (zero-width space and
// joiners, bidirectional marks, the byte order mark, soft hyphen), private use
// and unassigned code points, and the replacement character left by a broken
// encoding.
func isInvisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp, unicode.Cc, unicode.Cf, unicode.Co) ||
		!unicode.Is(unicode.L, r) && !unicode.Is(unicode.M, r) && !unicode.Is(unicode.N, r) && !unicode.Is(unicode.P, r) && !unicode.Is(unicode.S, r) ||
		r == utf8.RuneError || blankLetters[r]
}

// blankLetters are letters and marks that render as nothing (Hangul fillers,
// the combining grapheme joiner, the braille blank): classed as letters, used
// as invisible padding.
var blankLetters = map[rune]bool{0x034F: true, 0x115F: true, 0x1160: true, 0x3164: true, 0xFFA0: true, 0x2800: true}

func describe(r rune) string {
	switch {
	case unicode.IsSpace(r) || unicode.In(r, unicode.Z):
		return "a space"
	case unicode.Is(unicode.Cc, r):
		return "a control character"
	default:
		return "an invisible character"
	}
}
