package rooms

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"

	"visio.dev/operator/internal/backend"
)

func TestName(t *testing.T) {
	long := strings.Repeat("é", 300)
	for _, tc := range []struct{ display, number, want string }{
		{"Conseil municipal", "100234", "Conseil municipal (100234)"},
		{"  Salle  ", "1000", "Salle (1000)"},
		{long, "123456789012", string([]rune(long)[:234]) + "… (123456789012)"},
		{strings.Repeat("a", 235), "123456789012", strings.Repeat("a", 235) + " (123456789012)"},
		{strings.Repeat("a", 236), "123456789012", strings.Repeat("a", 234) + "… (123456789012)"},
	} {
		got := Name(tc.display, tc.number)
		if got != tc.want {
			t.Errorf("Name(%.20q…, %s) = %.40q…, want %.40q…", tc.display, tc.number, got, tc.want)
		}
		if n := utf8.RuneCountInString(got); n > MaxNameLength {
			t.Errorf("Name(%.20q…) has %d characters", tc.display, n)
		}
	}
}

func TestDesired(t *testing.T) {
	limit := int32(25)
	s := Spec{UID: "uid-1", DisplayName: "Conseil", Description: "Conseil municipal", NumericID: "123456",
		Aliases: []string{"z@visio.example", "a@visio.example"}, SIPDomain: "visio.example",
		HostPIN: "482915", GuestPIN: "739164", ParticipantLimit: &limit}
	room := Desired(s)
	if room.Key != "visio-uid-1" || room.Name != "Conseil (123456)" || room.NumericID != "123456" ||
		!slices.Equal(room.Aliases, []string{"123456@visio.example", "a@visio.example", "z@visio.example"}) ||
		room.HostPIN != "482915" || room.GuestPIN != "" || room.AllowGuests || *room.ParticipantLimit != 25 {
		t.Fatalf("Desired = %+v", room)
	}
	limit = 30
	if *room.ParticipantLimit != 25 {
		t.Fatal("the desired room shares the spec's participant limit")
	}
	if !slices.Equal(room.DialStrings(), []string{"123456", "123456@visio.example", "a@visio.example", "z@visio.example"}) {
		t.Fatalf("DialStrings = %v", room.DialStrings())
	}
	s.AllowGuests = true
	if g := Desired(s); g.GuestPIN != "739164" || !g.AllowGuests {
		t.Fatalf("with guests allowed the guest PIN is sent: %+v", g)
	}
	s.SIPDomain = ""
	if g := Desired(s); len(g.Aliases) != 2 {
		t.Fatalf("no SIP domain, no SIP alias: %v", g.Aliases)
	}
}

func TestDiff(t *testing.T) {
	want := Desired(Spec{UID: "u", DisplayName: "R", NumericID: "1234", Aliases: []string{"b", "a"}, HostPIN: "482915"})
	// As a backend reads it back: every dial string in Aliases.
	have := backend.Room{Key: want.Key, Name: want.Name, Aliases: []string{"a", "1234", "b"}, HostPIN: "482915"}
	if d := Diff(want, &have); len(d) != 0 {
		t.Fatalf("Diff of the same room read back = %v", d)
	}
	have.HostPIN = "111222"
	have.Aliases = []string{"a", "b"}
	if d := Diff(want, &have); !slices.Equal(d, []string{"aliases", "hostPin"}) {
		t.Fatalf("Diff = %v", d)
	}
	if d := Diff(want, nil); d != nil {
		t.Fatalf("Diff with nothing to compare = %v", d)
	}
}

func TestClaimName(t *testing.T) {
	a, b := ClaimName("conseil@visio.example"), ClaimName("conseil@visio.example2")
	if a == b || a != ClaimName("conseil@visio.example") || len(a) > 63 || !strings.HasPrefix(a, "ds-") {
		t.Fatalf("ClaimName = %q, %q", a, b)
	}
}

func TestTakesOver(t *testing.T) {
	p, n := Claimant{Provisioned: true}, Claimant{}
	for _, tc := range []struct {
		claimant, holder Claimant
		want             bool
	}{{p, n, true}, {p, p, false}, {n, p, false}, {n, n, false}} {
		if got := TakesOver(tc.claimant, tc.holder); got != tc.want {
			t.Errorf("TakesOver(%+v, %+v) = %v", tc.claimant, tc.holder, got)
		}
		if tc.want && TakesOver(tc.holder, tc.claimant) {
			t.Errorf("both %+v and %+v take over", tc.claimant, tc.holder)
		}
	}
}

func TestKeys(t *testing.T) {
	uid, ok := UIDOfKey(Key("0b1c-22"))
	if !ok || uid != "0b1c-22" {
		t.Fatalf("UIDOfKey(Key) = %q, %v", uid, ok)
	}
	for _, k := range []string{"visio-", "other-1", "", "visio-x:visio-0b1c-22"} {
		if _, ok := UIDOfKey(k); ok {
			t.Errorf("UIDOfKey(%q) is ours", k)
		}
	}
}

// FuzzName: whatever the display name, the name fits Pexip, is valid UTF-8,
// and two rooms with different numbers never share it.
func FuzzName(f *testing.F) {
	f.Add("Conseil municipal", uint64(100234), uint64(100235))
	f.Add(strings.Repeat("é", 260), uint64(999999999999), uint64(1000))
	f.Add("a (1000)", uint64(1000), uint64(10001))
	f.Fuzz(func(t *testing.T, display string, a, b uint64) {
		na, nb := FormatNumericID(1000+a%999999999000), FormatNumericID(1000+b%999999999000)
		x, y := Name(display, na), Name(display, nb)
		if utf8.RuneCountInString(x) > MaxNameLength || !utf8.ValidString(x) {
			t.Fatalf("Name(%q, %s) = %q: too long or invalid", display, na, x)
		}
		if na != nb && x == y {
			t.Fatalf("numbers %s and %s give the same name %q", na, nb, x)
		}
	})
}

// FuzzPick: picks for distinct rooms are distinct numbers of the range, until
// the range is exhausted.
func FuzzPick(f *testing.F) {
	f.Add(uint64(1000), uint64(20), uint8(30))
	f.Add(uint64(100000), uint64(0), uint8(3))
	f.Fuzz(func(t *testing.T, lo, width uint64, rooms uint8) {
		lo = 1000 + lo%1_000_000
		hi := lo + width%200
		p := NewNumberPool()
		seen := map[string]bool{}
		taken := func(s string) (bool, error) { return seen[s], nil }
		claimed := func() (map[string]bool, error) { return seen, nil }
		for i := range int(rooms) {
			n, err := p.Pick(lo, hi, types.UID(FormatNumericID(uint64(i))), time.Unix(0, 0), taken, claimed)
			if err != nil {
				if uint64(len(seen)) < hi-lo+1 {
					t.Fatalf("pick %d: %v with %d of %d numbers used", i, err, len(seen), hi-lo+1)
				}
				continue
			}
			if seen[n] {
				t.Fatalf("pick %d: %s handed out twice", i, n)
			}
			seen[n] = true
		}
	})
}
