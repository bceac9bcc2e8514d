package userimport

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/text/encoding/charmap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "visio.dev/operator/api/v1alpha1"
)

func cp1252(t testing.TB, s string) []byte {
	t.Helper()
	b, err := charmap.Windows1252.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecode(t *testing.T) {
	const text = "Prénom;Nom\nCéline;Pâris\n"
	utf16 := []byte{0xFF, 0xFE}
	for _, r := range text {
		utf16 = append(utf16, byte(r), byte(r>>8))
	}
	for _, tc := range []struct {
		name string
		data []byte
		enc  Encoding
	}{
		{"UTF-8", []byte(text), UTF8},
		{"UTF-8 with BOM", append([]byte{0xEF, 0xBB, 0xBF}, text...), UTF8BOM},
		{"Windows-1252", cp1252(t, text), Windows1252},
		{"UTF-16 little endian with BOM", utf16, UTF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, enc := decode(tc.data)
			if got != text || enc != tc.enc {
				t.Errorf("decode = %q, %s; want %q, %s", got, enc, text, tc.enc)
			}
		})
	}
}

func TestDetectSeparator(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   rune
	}{
		{"email,givenName,familyName\n", ','},
		{"Courriel;Prénom;Nom\n", ';'},
		{"email\tprénom\tnom\n", '\t'},
		{`"Nom, prénom";Courriel` + "\n", ';'},
		{"email\n", ','},
		{"email;nom\na,b,c,d,e\n", ';'}, // the header line decides
	} {
		if got := detectSeparator(tc.header); got != tc.want {
			t.Errorf("detectSeparator(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

func TestColumnOf(t *testing.T) {
	for header, want := range map[string]Column{
		"email": ColEmail, "E-mail": ColEmail, "Courriel": ColEmail, " COURRIEL ": ColEmail, "Adresse e-mail": ColEmail,
		"givenName": ColGivenName, "Prénom": ColGivenName, "PRENOM": ColGivenName, "First name": ColGivenName,
		"familyName": ColFamilyName, "Nom": ColFamilyName, "family_name": ColFamilyName,
		"Téléphone": ColPhone, "phone": ColPhone, "Pays": ColCountry, "country": ColCountry,
		"Code postal": ColPostalCode, "postalCode": ColPostalCode, "Fuseau horaire": ColTimeZone, "timeZone": ColTimeZone,
		"Rôle": ColRole, "role": ColRole, "Actif": ColActive, "active": ColActive, "licensePool": ColLicensePool, "Pool": ColLicensePool,
	} {
		if got, ok := columnOf(header); !ok || got != want {
			t.Errorf("columnOf(%q) = %q, %v; want %q", header, got, ok, want)
		}
	}
	for _, header := range []string{"Civilité", "Fonction", "ID technique SI", ""} {
		if got, ok := columnOf(header); ok {
			t.Errorf("columnOf(%q) = %q, want no column", header, got)
		}
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want v1.PlatformUserRole
	}{
		{"User", v1.RoleUser}, {"utilisateur", v1.RoleUser}, {"Organisateur délégué", v1.RoleDelegatedOrganizer},
		{"ORGANISATEUR DELEGUE", v1.RoleDelegatedOrganizer}, {"DelegatedOrganizer", v1.RoleDelegatedOrganizer},
		{"Administrateur", v1.RoleAdministrator}, {"administrator", v1.RoleAdministrator}, {"Concierge", v1.RoleConcierge},
	} {
		if got, msg := parseRole(tc.in); got != tc.want || msg != "" {
			t.Errorf("parseRole(%q) = %q, %q; want %q", tc.in, got, msg, tc.want)
		}
	}
	if _, msg := parseRole("Chef"); msg == "" {
		t.Error(`parseRole("Chef") accepted`)
	}
	for in, want := range map[string]bool{"oui": true, "Non": false, "TRUE": true, "false": false, "yes": true, "no": false,
		"1": true, "0": false, "VRAI": true, "FAUX": false} {
		if got, msg := parseActive(in); got != want || msg != "" {
			t.Errorf("parseActive(%q) = %v, %q; want %v", in, got, msg, want)
		}
	}
	if _, msg := parseActive("peut-être"); msg == "" {
		t.Error(`parseActive("peut-être") accepted`)
	}
	for in, want := range map[string]string{"France": "FR", "france": "FR", "FR": "FR", "fr": "FR", "Allemagne": "DE",
		"Germany": "DE", "Royaume-Uni": "GB", "United Kingdom": "GB", "UK": "GB", "États-Unis": "US", "Etats Unis": "US",
		"Belgique": "BE", "Suisse": "CH", "Côte d'Ivoire": "CI", "Côte d’Ivoire": "CI", "La Réunion": "RE", "Espagne": "ES"} {
		if got, ok := CountryCode(in); !ok || got != want {
			t.Errorf("CountryCode(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"Atlantide", "ZZ", "EU", "XX", "Fr4nce"} {
		if got, ok := CountryCode(in); ok {
			t.Errorf("CountryCode(%q) = %q, want no country", in, got)
		}
	}
	if n := len(isoCodes()); n != 250 {
		t.Errorf("%d country codes, want the 249 of ISO 3166-1 and XK", n)
	}
	for _, tc := range []struct{ in, country, want string }{
		{"+33612345678", "", "+33612345678"}, {"+33 6 12 34 56 78", "FR", "+33612345678"},
		{"06 12 34 56 78", "FR", "+33612345678"}, {"06.12.34.56.78", "", "+33612345678"},
		{"0033612345678", "", "+33612345678"}, {"+1 (415) 555-0100", "US", "+14155550100"},
	} {
		if got, msg := parsePhone(tc.in, tc.country); got != tc.want || msg != "" {
			t.Errorf("parsePhone(%q, %q) = %q, %q; want %q", tc.in, tc.country, got, msg, tc.want)
		}
	}
	for _, tc := range []struct{ in, country string }{{"06 12 34 56 78", "BE"}, {"12345", ""}, {"+0612345678", ""}, {"appelez-moi", ""}} {
		if got, msg := parsePhone(tc.in, tc.country); msg == "" {
			t.Errorf("parsePhone(%q, %q) = %q, want refused", tc.in, tc.country, got)
		}
	}
	for in, ok := range map[string]bool{"Europe/Paris": true, "America/Guadeloupe": true, "UTC": true, "Local": false, "Europe/Pariss": false, "../etc/passwd": false} {
		if _, msg := parseTimeZone(in); (msg == "") != ok {
			t.Errorf("parseTimeZone(%q): %q, want ok=%v", in, msg, ok)
		}
	}
}

func isoCodes() map[string]bool {
	out := map[string]bool{}
	for _, code := range countries {
		out[code] = true
	}
	return out
}

func TestParse(t *testing.T) {
	excel := "Civilité;Prénom;Nom;Courriel;Téléphone;Pays;Code postal;Fuseau horaire;Rôle;Actif;Fonction\n" +
		"M.;Marius;Pâris;Marius.Paris@Mairie-Exemple.fr;06 12 34 56 78;France;29200;Europe/Paris;Administrateur;oui;Maire\n" +
		";;;;;;;;;;\n" +
		"Mme;Céline;Le Goff;celine.legoff@mairie-exemple.fr;;France;29200;;Organisateur délégué;non;DGS\n"
	s := Parse(cp1252(t, excel))
	if len(s.Problems) != 0 {
		t.Fatalf("problems: %v", s.Problems)
	}
	if s.Encoding != Windows1252 || s.Separator != ';' {
		t.Errorf("read as %s with %q, want Windows-1252 with ';'", s.Encoding, s.Separator)
	}
	if strings.Join(s.Ignored, ",") != "Civilité,Fonction" {
		t.Errorf("ignored %q, want Civilité and Fonction", s.Ignored)
	}
	want := []Row{
		{Line: 2, Spec: v1.PlatformUserSpec{Email: "marius.paris@mairie-exemple.fr", GivenName: "Marius", FamilyName: "Pâris",
			Phone: "+33612345678", Country: "FR", PostalCode: "29200", TimeZone: "Europe/Paris", Role: v1.RoleAdministrator, Active: ptr.To(true)}},
		{Line: 4, Spec: v1.PlatformUserSpec{Email: "celine.legoff@mairie-exemple.fr", GivenName: "Céline", FamilyName: "Le Goff",
			Country: "FR", PostalCode: "29200", Role: v1.RoleDelegatedOrganizer, Active: ptr.To(false)}},
	}
	if len(s.Rows) != len(want) {
		t.Fatalf("rows %+v, want %+v", s.Rows, want)
	}
	for i := range want {
		if s.Rows[i].Line != want[i].Line || !Same(s.Rows[i].Spec, want[i].Spec) {
			t.Errorf("row %d = %+v, want %+v", i, s.Rows[i], want[i])
		}
	}
	if s.Has[ColLicensePool] || !s.Has[ColActive] {
		t.Errorf("columns %v", s.Has)
	}
}

func TestParseProblems(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"every problem on its line", "email,givenName,familyName,role,active,phone,country,timeZone\n" +
			"ok@example.fr,Ann,Lee,User,yes,,,\n" +
			"not-an-email,Bob,Ray,User,yes,,,\n" +
			"c@example.fr,,Ray,Chef,maybe,12,Atlantide,Mars/Base\n" +
			"OK@example.fr,Ann,Lee,User,yes,,,\n" +
			"\"multi\nline@x.fr\",Eve,Lo,User,yes,,,\n" +
			"e@example.fr,\"Eve\nSecond\",Lo,Chef,yes,,,\n",
			[]string{
				`line 3: email: not an email address: "not-an-email"`,
				`line 4: givenName: required`,
				`line 4: country: not a country: "Atlantide"`,
				`line 4: phone: not a phone number in E.164 form`,
				`line 4: timeZone: not a known IANA time zone`,
				`line 4: role: not a role: "Chef"`,
				`line 4: active: not yes or no: "maybe"`,
				`line 5: email: ok@example.fr is also on line 2`,
				`line 6: email: not an email address`,
				`line 8: role: not a role: "Chef"`,
			}},
		{"missing required column", "Courriel;Prénom\na@b.fr;Ann\n", []string{`line 1: familyName: missing column: the file needs a column "familyName" (or "nom")`}},
		{"two headers for one column", "email,courriel,givenName,familyName\n", []string{`line 1: courriel: the same column as "email"`}},
		{"empty file", "", []string{"line 1: header: the file is empty"}},
		{"sep line", "sep=;\nemail;prénom\n", []string{`line 2: familyName: missing column`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Parse([]byte(tc.file))
			var got []string
			for _, p := range s.Problems {
				got = append(got, p.String())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("problem %d = %q, want %q...", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestUserName(t *testing.T) {
	dns1123 := regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	seen := map[string]string{}
	for _, email := range []string{"marius.paris@mairie.fr", "marius.paris@autre-mairie.fr", "marius-paris@mairie.fr",
		"céline.le.goff@mairie.fr", "x@y.fr", "___@y.fr", strings.Repeat("a.", 120) + "@y.fr", "jean+tag@y.fr"} {
		n := UserName(email)
		if !dns1123.MatchString(n) || len(n) > 49 {
			t.Errorf("UserName(%q) = %q: not a DNS-1123 label of at most 49 characters", email, n)
		}
		if UserName(email) != n {
			t.Errorf("UserName(%q) changes", email)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("UserName(%q) = UserName(%q) = %q", email, other, n)
		}
		seen[n] = email
	}
	if n := UserName("céline.le.goff@mairie.fr"); !strings.HasPrefix(n, "celine-le-goff-") {
		t.Errorf("UserName = %q, want it readable", n)
	}
}

func TestDesired(t *testing.T) {
	live := v1.PlatformUserSpec{Email: "a@b.fr", GivenName: "Ann", FamilyName: "Lee", Phone: "+33612345678",
		Role: v1.RoleAdministrator, Active: ptr.To(false), LicensePool: "default"}
	// A file without phone, role or active columns leaves them as they are.
	s := Parse([]byte("email,givenName,familyName\na@b.fr,Ann,Lee\n"))
	if d := s.Desired(s.Rows[0], &live); !Same(d, live) {
		t.Errorf("desired %+v, want the live spec %+v", d, live)
	}
	// A blank cell of a column the file has clears the field; blank role and
	// active mean their defaults.
	s = Parse([]byte("email,givenName,familyName,phone,role,active\na@b.fr,Ann,Lee,,,\n"))
	d := s.Desired(s.Rows[0], &live)
	if d.Phone != "" || d.Role != v1.RoleUser || !*d.Active {
		t.Errorf("desired %+v: want no phone, role User, active", d)
	}
	if Same(d, live) {
		t.Error("Same ignores a change")
	}
	// Defaults compare equal to the values the API server fills in.
	if !Same(v1.PlatformUserSpec{Email: "a@b.fr"}, v1.PlatformUserSpec{Email: "a@b.fr", Role: v1.RoleUser, Active: ptr.To(true), LicensePool: "default"}) {
		t.Error("Same does not apply the defaults")
	}
}

func TestExportRoundTrip(t *testing.T) {
	users := []v1.PlatformUser{
		{Spec: v1.PlatformUserSpec{Email: "a@b.fr", GivenName: "Ann, \"the\" first", FamilyName: "Lee", Phone: "+33612345678",
			Country: "FR", PostalCode: "01000", TimeZone: "Europe/Paris", Role: v1.RoleDelegatedOrganizer, Active: ptr.To(false), LicensePool: "gold"}},
		{Spec: v1.PlatformUserSpec{Email: "c@d.fr", GivenName: "Çédric", FamilyName: "Ñandú\nSecond line"}},
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, users); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "email,givenName,familyName,phone,country,postalCode,timeZone,role,active,licensePool\n") {
		t.Errorf("header: %q", buf.String())
	}
	s := Parse(buf.Bytes())
	if len(s.Problems) != 0 || len(s.Ignored) != 0 || len(s.Rows) != len(users) {
		t.Fatalf("parsed %+v", s)
	}
	for i := range users {
		if d := s.Desired(s.Rows[i], &users[i].Spec); !Same(d, users[i].Spec) {
			t.Errorf("row %d: %+v, want %+v", i, d, users[i].Spec)
		}
		if d := s.Desired(s.Rows[i], nil); !Same(d, users[i].Spec) {
			t.Errorf("row %d into an empty entity: %+v, want %+v", i, d, users[i].Spec)
		}
	}
}

func TestManifest(t *testing.T) {
	full := v1.PlatformUserSpec{Email: "a@b.fr", GivenName: "Ann", FamilyName: "Lee", Phone: "+33612345678", Active: ptr.To(false)}
	m := Manifest("entity-a", "ann-1", full, nil)
	spec := m.Object["spec"].(map[string]any)
	if m.GetKind() != "PlatformUser" || m.GetNamespace() != "entity-a" || len(spec) != 5 || spec["active"] != false {
		t.Errorf("manifest %v: want only the fields set", m.Object)
	}
	m = Manifest("entity-a", "ann-1", full, map[Column]bool{ColActive: true})
	if spec := m.Object["spec"].(map[string]any); len(spec) != 4 || spec["phone"] != nil {
		t.Errorf("manifest %v: want email, names and active only", m.Object)
	}
}

func TestOwned(t *testing.T) {
	fields := []metav1.ManagedFieldsEntry{
		{Manager: "kubectl-visio", Operation: metav1.ManagedFieldsOperationApply,
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:email":{},"f:phone":{},"f:active":{}}}`)},
		{Manager: "flux", Operation: metav1.ManagedFieldsOperationApply,
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:country":{}}}`)},
		{Manager: "kubectl-visio", Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:role":{}}}`)},
	}
	got := Owned(fields, "kubectl-visio")
	if len(got) != 3 || !got[ColEmail] || !got[ColPhone] || !got[ColActive] {
		t.Errorf("Owned = %v, want email, phone and active", got)
	}
	s := Parse([]byte("email,givenName,familyName,role\na@b.fr,Ann,Lee,User\n"))
	f := s.Fields(got)
	if !f[ColRole] || !f[ColPhone] || f[ColCountry] || f[ColTimeZone] {
		t.Errorf("Fields = %v, want the file's columns and the owned ones", f)
	}
}
