package userimport

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	v1 "visio.dev/operator/api/v1alpha1"
)

// The API's rules, as the CRD states them (api/v1alpha1/platformuser_types.go),
// so that a row the API server would refuse is refused before anything is written.
var (
	emailPattern       = regexp.MustCompile(`^[^@\sA-Z]+@[^@\sA-Z]+\.[^@\sA-Z]+$`)
	phonePattern       = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	postalCodePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 -]*$`)
	timeZonePattern    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`)
	licensePoolPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

const (
	maxEmail       = 254
	maxName        = 128
	maxPostalCode  = 16
	maxTimeZone    = 64
	maxLicensePool = 253
)

// roles maps role values, folded, in English and French, to roles.
var roles = map[string]v1.PlatformUserRole{
	"user": v1.RoleUser, "utilisateur": v1.RoleUser, "utilisatrice": v1.RoleUser,
	"delegatedorganizer": v1.RoleDelegatedOrganizer, "organisateurdelegue": v1.RoleDelegatedOrganizer,
	"organisatricedeleguee": v1.RoleDelegatedOrganizer,
	"administrator":         v1.RoleAdministrator, "administrateur": v1.RoleAdministrator, "administratrice": v1.RoleAdministrator,
	"admin":     v1.RoleAdministrator,
	"concierge": v1.RoleConcierge,
}

// booleans maps active values, folded, to what they mean. French Excel shows
// TRUE and FALSE as VRAI and FAUX.
var booleans = map[string]bool{
	"true": true, "false": false, "yes": true, "no": false, "oui": true, "non": false,
	"1": true, "0": false, "vrai": true, "faux": false, "o": true, "n": false, "y": true,
}

// parseEmail lower-cases an address: the API refuses capitals, and people
// type their addresses with them.
func parseEmail(s string) (string, string) {
	e := strings.ToLower(s)
	switch {
	case e == "":
		return "", "required"
	case utf8.RuneCountInString(e) > maxEmail:
		return "", "longer than 254 characters"
	case !emailPattern.MatchString(e):
		return "", "not an email address: " + quote(s)
	}
	return e, ""
}

func parseName(s string) (string, string) {
	switch {
	case s == "":
		return "", "required"
	case utf8.RuneCountInString(s) > maxName:
		return "", "longer than 128 characters"
	}
	return s, ""
}

// parsePhone accepts E.164 written as people write it: with spaces, dots,
// dashes or parentheses, with 00 for +, and French national numbers
// (0X XX XX XX XX) when the country is France or not given.
func parsePhone(s, country string) (string, string) {
	p := strings.Map(func(r rune) rune {
		if strings.ContainsRune(" .-()/\u00a0", r) {
			return -1
		}
		return r
	}, s)
	if strings.HasPrefix(p, "00") {
		p = "+" + p[2:]
	}
	if len(p) == 10 && p[0] == '0' && p[1] != '0' && (country == "" || country == "FR") && strings.Trim(p, "0123456789") == "" {
		p = "+33" + p[1:]
	}
	if !phonePattern.MatchString(p) {
		return "", "not a phone number in E.164 form, e.g. +33612345678: " + quote(s)
	}
	return p, ""
}

func parseCountry(s string) (string, string) {
	code, ok := CountryCode(s)
	if !ok {
		return "", "not a country: " + quote(s) + " (an ISO code such as FR, or a name in French or English)"
	}
	return code, ""
}

func parsePostalCode(s string) (string, string) {
	switch {
	case len(s) > maxPostalCode:
		return "", "longer than 16 characters"
	case !postalCodePattern.MatchString(s):
		return "", "not a postal code: " + quote(s) + " (letters, digits, spaces and dashes)"
	}
	return s, ""
}

// parseTimeZone checks the name as the admission webhook does: a zone the
// time package knows (the CLI embeds the zone database), never "Local".
func parseTimeZone(s string) (string, string) {
	if len(s) <= maxTimeZone && timeZonePattern.MatchString(s) && s != "Local" {
		if _, err := time.LoadLocation(s); err == nil {
			return s, ""
		}
	}
	return "", "not a known IANA time zone, e.g. Europe/Paris: " + quote(s)
}

func parseRole(s string) (v1.PlatformUserRole, string) {
	if r, ok := roles[fold(s)]; ok {
		return r, ""
	}
	return "", "not a role: " + quote(s) + " (User, DelegatedOrganizer, Administrator, Concierge, or Utilisateur, Organisateur délégué, Administrateur)"
}

func parseActive(s string) (bool, string) {
	if b, ok := booleans[fold(s)]; ok {
		return b, ""
	}
	return false, "not yes or no: " + quote(s) + " (true/false, yes/no, oui/non, 1/0)"
}

func parseLicensePool(s string) (string, string) {
	if len(s) > maxLicensePool || !licensePoolPattern.MatchString(s) {
		return "", "not a license pool name: " + quote(s) + " (lower case letters, digits, dashes and dots)"
	}
	return s, ""
}

// quote shows a cell in a message, cut short so a pasted paragraph stays readable.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 64 {
		s = string([]rune(s)[:64]) + "…"
	}
	return `"` + s + `"`
}
