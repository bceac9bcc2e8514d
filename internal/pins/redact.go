package pins

import (
	"regexp"
	"strings"
)

// Redacted replaces a PIN in text.
const Redacted = "[redacted]"

var pinRun = regexp.MustCompile(`[0-9#]+`)

// Redact removes the PINs from s. A PIN inside a longer run of digits takes
// the whole run with it: replacing only the PIN would give it away through
// what is left around it ("[redacted]9" next to a known 13579 tells that the
// PIN is 1357).
func Redact(s string, pins ...string) string {
	var live []string
	for _, p := range pins {
		if p != "" && strings.Contains(s, p) {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return s
	}
	s = pinRun.ReplaceAllStringFunc(s, func(run string) string {
		for _, p := range live {
			if strings.Contains(run, p) {
				return Redacted
			}
		}
		return run
	})
	for _, p := range live {
		s = strings.ReplaceAll(s, p, Redacted)
	}
	return s
}
