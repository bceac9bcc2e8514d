package pins

import "testing"

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"room 13579 refused", "room [redacted] refused"},
		{"pin 1357 and ref 13579", "pin [redacted] and ref [redacted]"},
		{"ref 2468 is fine", "ref 2468 is fine"},
		{"x1357y", "x[redacted]y"},
		{"1357# dialled", "[redacted] dialled"},
	} {
		if got := Redact(tc.in, "1357", ""); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
