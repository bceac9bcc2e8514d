package pins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	hostPath        = field.NewPath("data").Key(HostPINKey)
	guestPath       = field.NewPath("data").Key(GuestPINKey)
	allowGuestsPath = field.NewPath("spec", "allowGuests")
)

// want is the part of a field.Error that a rule decides.
type want struct {
	typ    field.ErrorType
	field  string
	detail string
}

func got(errs field.ErrorList) []want {
	var out []want
	for _, e := range errs {
		out = append(out, want{e.Type, e.Field, e.Detail})
	}
	return out
}

func invalid(p *field.Path, detail string) want {
	return want{field.ErrorTypeInvalid, p.String(), detail}
}

func sameWants(a, b []want) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestValidatePIN(t *testing.T) {
	tests := []struct {
		name, pin string
		detail    string // empty: valid
	}{
		{"shortest", "5821", ""},
		{"longest", "58210493761028374659", ""},
		{"default length", "582104", ""},
		{"wrap ascending is not a run", "8901", ""},
		{"wrap descending is not a run", "1098", ""},
		{"zero after nine ascending", "0987", ""},
		{"long wrap ascending", "12345678901234567890", ""},
		{"long wrap descending", "09876543210987654321", ""},
		{"run broken at the end", "12346", ""},
		{"run broken at the start", "21234", ""},
		{"steps of two", "2468", ""},
		{"one digit differs at the end", "11112", ""},
		{"one digit differs at the start", "21111", ""},
		{"one digit differs, twenty long", "11111111111111111112", ""},
		{"leading zeros", "0071", ""},
		{"palindrome", "12321", ""},

		{"empty", "", msgLength},
		{"one digit", "5", msgLength},
		{"three digits", "582", msgLength},
		{"twenty-one digits", "582104937610283746591", msgLength},
		{"very long", strings.Repeat("5821", 100), msgLength},
		{"letter", "58a1", msgNotDigits},
		{"trailing newline", "5821\n", msgNotDigits},
		{"trailing CRLF", "5821\r\n", msgNotDigits},
		{"leading space", " 5821", msgNotDigits},
		{"inner space", "58 21", msgNotDigits},
		{"plus sign", "+5821", msgNotDigits},
		{"minus sign", "-5821", msgNotDigits},
		{"decimal point", "58.21", msgNotDigits},
		{"exponent", "5e21", msgNotDigits},
		{"fullwidth digits", "\uff15\uff18\uff12\uff11", msgNotDigits},
		{"arabic-indic digits", "\u0665\u0668\u0662\u0661", msgNotDigits},
		{"NUL byte", "5821\x00", msgNotDigits},
		{"invalid UTF-8", "58\xff21", msgNotDigits},
		{"short and not digits", "a", msgNotDigits},
		{"all zeros", "0000", msgSameDigit},
		{"all sevens, seven long", "7777777", msgSameDigit},
		{"all nines, twenty long", strings.Repeat("9", 20), msgSameDigit},
		{"ascending from one", "1234", msgConsecutive},
		{"ascending from zero", "0123", msgConsecutive},
		{"ascending to nine", "6789", msgConsecutive},
		{"ascending, ten long", "0123456789", msgConsecutive},
		{"ascending, default length", "345678", msgConsecutive},
		{"descending", "98765", msgConsecutive},
		{"descending to zero", "3210", msgConsecutive},
		{"descending, ten long", "9876543210", msgConsecutive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := ValidatePIN(hostPath, tt.pin)
			var w []want
			if tt.detail != "" {
				w = []want{invalid(hostPath, tt.detail)}
			}
			if g := got(errs); !sameWants(g, w) {
				t.Errorf("got %+v, want %+v", g, w)
			}
		})
	}
}

func TestValidatePair(t *testing.T) {
	const good, other = "5821", "90071"
	tests := []struct {
		name        string
		host, guest string
		allowGuests bool
		want        []want
	}{
		{"no PINs", "", "", false, nil},
		{"host only", good, "", false, nil},
		{"host only, open to guests", good, "", true, nil},
		{"host and guest", good, other, false, nil},
		{"host and guest, open to guests", good, other, true, nil},
		{"guests allowed without host PIN", "", "", true,
			[]want{invalid(allowGuestsPath, msgGuestsNoHost)}},
		{"guest PIN without host PIN", "", other, false,
			[]want{{field.ErrorTypeRequired, hostPath.String(), msgGuestNoHost}}},
		{"guest PIN without host PIN, open to guests", "", other, true, []want{
			{field.ErrorTypeRequired, hostPath.String(), msgGuestNoHost},
			invalid(allowGuestsPath, msgGuestsNoHost),
		}},
		{"guest PIN equals host PIN", good, good, false,
			[]want{invalid(guestPath, msgSameAsHost)}},
		{"guest PIN equals host PIN, open to guests", good, good, true,
			[]want{invalid(guestPath, msgSameAsHost)}},
		{"same digits, different length", "58210", "5821", false, nil},
		{"weak host PIN", "1111", other, false,
			[]want{invalid(hostPath, msgSameDigit)}},
		{"weak guest PIN", good, "4321", false,
			[]want{invalid(guestPath, msgConsecutive)}},
		{"both weak and equal", "2222", "2222", true, []want{
			invalid(hostPath, msgSameDigit),
			invalid(guestPath, msgSameDigit),
			invalid(guestPath, msgSameAsHost),
		}},
		{"malformed host PIN, open to guests", "58 21", "", true,
			[]want{invalid(hostPath, msgNotDigits)}},
		{"short guest PIN without host PIN", "", "58", false, []want{
			invalid(guestPath, msgLength),
			{field.ErrorTypeRequired, hostPath.String(), msgGuestNoHost},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := ValidatePair(hostPath, guestPath, tt.host, tt.guest, tt.allowGuests, allowGuestsPath)
			if g := got(errs); !sameWants(g, tt.want) {
				t.Errorf("got %+v, want %+v", g, tt.want)
			}
		})
	}
}

// TestMessages pins the wording users see, including how apimachinery renders
// an omitted value.
func TestMessages(t *testing.T) {
	tests := []struct {
		errs field.ErrorList
		want string
	}{
		{ValidatePIN(hostPath, "0000"), "data[hostPin]: Invalid value: must not be all the same digit"},
		{ValidatePIN(hostPath, "1234"), "data[hostPin]: Invalid value: must not be a run of consecutive digits"},
		{ValidatePIN(hostPath, "582"), "data[hostPin]: Invalid value: must be 4 to 20 digits"},
		{ValidatePIN(hostPath, "5821\n"), "data[hostPin]: Invalid value: must contain only the digits 0-9 (no spaces, signs or trailing newline)"},
		{ValidatePair(hostPath, guestPath, "5821", "5821", false, allowGuestsPath), "data[guestPin]: Invalid value: must differ from the host PIN"},
		{ValidatePair(hostPath, guestPath, "", "5821", false, allowGuestsPath), "data[hostPin]: Required value: a guest PIN needs a host PIN"},
		{ValidatePair(hostPath, guestPath, "", "", true, allowGuestsPath), "spec.allowGuests: Invalid value: true: allowGuests requires a host PIN, so that hosts and guests can be told apart"},
	}
	for _, tt := range tests {
		if len(tt.errs) != 1 || tt.errs[0].Error() != tt.want {
			t.Errorf("got %v, want [%s]", tt.errs, tt.want)
		}
	}
}

// catalog returns every error string the package can produce for the test
// paths. Nothing in it depends on a PIN, so an error found in it carries none.
func catalog() map[string]bool {
	c := map[string]bool{}
	for _, p := range []*field.Path{hostPath, guestPath} {
		for _, m := range []string{msgNotDigits, msgLength, msgSameDigit, msgConsecutive} {
			c[field.Invalid(p, omit, m).Error()] = true
		}
	}
	c[field.Invalid(guestPath, omit, msgSameAsHost).Error()] = true
	c[field.Required(hostPath, msgGuestNoHost).Error()] = true
	c[field.Invalid(allowGuestsPath, true, msgGuestsNoHost).Error()] = true
	return c
}

func catalogText() string {
	var b strings.Builder
	for s := range catalog() {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

func TestCatalogHoldsNoPINShapedText(t *testing.T) {
	run := regexp.MustCompile(`[0-9]{4,}`)
	for s := range catalog() {
		if run.MatchString(s) {
			t.Errorf("message %q contains four or more digits in a row", s)
		}
	}
}

// renderings are the ways an error list reaches users, logs and status.
func renderings(errs field.ErrorList) []string {
	// Not %#v of the list: it prints pointer addresses, whose hex digits can
	// match a PIN by chance while showing nothing of it.
	out := []string{fmt.Sprint(errs), fmt.Sprintf("%+v", errs)}
	if agg := errs.ToAggregate(); agg != nil {
		out = append(out, agg.Error())
	}
	for _, e := range errs {
		j, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		out = append(out, e.Error(), e.ErrorBody(), string(j), fmt.Sprintf("%+v", *e), fmt.Sprintf("%#v", *e))
	}
	return out
}

func TestErrorsNeverContainPIN(t *testing.T) {
	pins := []string{
		// weak
		"0000", "7777777", "1234", "98765", "0123456789", strings.Repeat("3", 20),
		// malformed
		"5821\n", " 5821", "58a1", "+5821", "58.21", "\uff15\uff18\uff12\uff11",
		"582104937610283746591", strings.Repeat("5821", 30),
		// valid, reported through pair rules
		"5821", "90071", "8901", "58210493761028374659",
	}
	cat := catalog()
	check := func(t *testing.T, errs field.ErrorList, secrets ...string) {
		t.Helper()
		for _, e := range errs {
			if !cat[e.Error()] {
				t.Errorf("error %q is not one of the fixed messages", e.Error())
			}
			if s, ok := e.BadValue.(string); ok && s != "" {
				t.Errorf("error for %s carries a value", e.Field)
			}
		}
		for _, r := range renderings(errs) {
			for _, s := range secrets {
				if s != "" && strings.Contains(r, s) {
					t.Errorf("rendering %q contains a PIN", r)
				}
			}
		}
	}
	for _, p := range pins {
		t.Run(fmt.Sprintf("%q", p), func(t *testing.T) {
			check(t, ValidatePIN(hostPath, p), p)
			for _, allow := range []bool{false, true} {
				check(t, ValidatePair(hostPath, guestPath, p, p, allow, allowGuestsPath), p)
				check(t, ValidatePair(hostPath, guestPath, p, "", allow, allowGuestsPath), p)
				check(t, ValidatePair(hostPath, guestPath, "", p, allow, allowGuestsPath), p)
				check(t, ValidatePair(hostPath, guestPath, p, "1111", allow, allowGuestsPath), p, "1111")
				check(t, ValidatePair(hostPath, guestPath, "4321", p, allow, allowGuestsPath), p, "4321")
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	const draws = 10000
	var first [10]int
	hosts := map[string]bool{}
	for range draws {
		host, guest, err := Generate(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(host) != DefaultLength || len(guest) != DefaultLength {
			t.Fatalf("got lengths %d and %d, want %d", len(host), len(guest), DefaultLength)
		}
		// Reported without the PINs: this test must not teach that printing
		// them is fine.
		if errs := ValidatePair(hostPath, guestPath, host, guest, true, allowGuestsPath); len(errs) != 0 {
			t.Fatalf("generated PINs rejected: %v", errs)
		}
		first[host[0]-'0']++
		first[guest[0]-'0']++
		hosts[host] = true
	}
	// 2*draws first digits, 2000 expected per digit with a standard deviation
	// of about 42: the bounds are more than ten deviations wide.
	for d, n := range first {
		if n < 1500 || n > 2500 {
			t.Errorf("first digit %d drawn %d times out of %d, want about %d", d, n, 2*draws, 2*draws/10)
		}
	}
	// About 50 repeats are expected among a million possible PINs.
	if len(hosts) < draws-500 {
		t.Errorf("only %d distinct host PINs in %d draws", len(hosts), draws)
	}
}

func TestGenerateLength(t *testing.T) {
	for _, tt := range []struct{ in, want int }{
		{0, DefaultLength}, {-1, 4}, {-1000, 4}, {1, 4}, {3, 4}, {4, 4},
		{5, 5}, {8, 8}, {19, 19}, {20, 20}, {21, 20}, {1 << 30, 20},
	} {
		host, guest, err := Generate(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if len(host) != tt.want || len(guest) != tt.want {
			t.Errorf("Generate(%d): lengths %d and %d, want %d", tt.in, len(host), len(guest), tt.want)
		}
		if errs := ValidatePair(hostPath, guestPath, host, guest, true, allowGuestsPath); len(errs) != 0 {
			t.Errorf("Generate(%d): rejected: %v", tt.in, errs)
		}
	}
}

// TestGenerateRedraws drives the random source by hand through every reason
// to redraw: a weak PIN, a byte that would bias the digits, and a guest PIN
// equal to the host PIN.
func TestGenerateRedraws(t *testing.T) {
	script := []byte{
		1, 11, 21, 31, // 1111: all the same digit
		1, 2, 3, 4, // 1234: consecutive
		255, 5, 250, 8, 2, 1, // 5821, with 255 and 250 discarded
		15, 28, 102, 241, // 5821 again, as guest: equal to the host PIN
		249, 0, 10, 7, // 9007
	}
	host, guest, err := generate(bytes.NewReader(script), 4)
	if err != nil {
		t.Fatal(err)
	}
	if host != "5821" || guest != "9007" {
		t.Errorf("got %s and %s, want 5821 and 9007", host, guest)
	}
}

func TestGenerateRandomSourceFails(t *testing.T) {
	broken := errors.New("no entropy")
	for _, tt := range []struct {
		name string
		r    io.Reader
		want error
	}{
		{"at once", readerFunc(func([]byte) (int, error) { return 0, broken }), broken},
		{"after the host PIN", bytes.NewReader([]byte{5, 8, 2, 1, 9, 0}), io.ErrUnexpectedEOF},
		{"empty", bytes.NewReader(nil), io.EOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			host, guest, err := generate(tt.r, 4)
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
			if host != "" || guest != "" {
				t.Error("PINs returned along with an error")
			}
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
