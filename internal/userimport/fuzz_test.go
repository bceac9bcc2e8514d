package userimport

import (
	"bytes"
	"strings"
	"testing"

	v1 "visio.dev/operator/api/v1alpha1"
)

// FuzzParse feeds Parse arbitrary files. Whatever the bytes, it must not
// panic, every problem must point at a line of the file, every row it accepts
// must pass the API's own patterns with a distinct email, and what it accepts
// must survive an export and a re-import unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte("email,givenName,familyName\na@b.fr,Ann,Lee\n"))
	f.Add([]byte("Courriel;Prénom;Nom;Rôle;Actif;Pays\nA@B.fr;Ann;Lee;Administrateur;oui;France\n"))
	f.Add([]byte("\xef\xbb\xbfemail\tprénom\tnom\ta@b.fr\tAnn\tLee\n"))
	f.Add([]byte("Courriel;Pr\xe9nom;Nom\nc@d.fr;C\xe9line;P\xe2ris\n"))
	f.Add([]byte("sep=;\nemail;givenName;familyName;phone\n\"a@b.fr\";\"Ann\";\"Lee\";\"06 12 34 56 78\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := Parse(data)
		text, _ := decode(data)
		lines := strings.Count(text, "\n") + 2 // a last line without newline, and a "sep=" line
		for _, p := range s.Problems {
			if p.Line < 1 || p.Line > lines || p.Column == "" || p.Message == "" {
				t.Fatalf("problem %q outside the file's %d lines", p, lines)
			}
		}
		emails := map[string]bool{}
		users := make([]v1.PlatformUser, 0, len(s.Rows))
		for _, r := range s.Rows {
			d := s.Desired(r, nil)
			if !emailPattern.MatchString(d.Email) || emails[d.Email] || d.GivenName == "" && s.Has[ColGivenName] {
				t.Fatalf("row %+v accepted", r)
			}
			if d.Phone != "" && !phonePattern.MatchString(d.Phone) || d.Country != "" && len(d.Country) != 2 ||
				d.PostalCode != "" && !postalCodePattern.MatchString(d.PostalCode) || d.LicensePool != "" && !licensePoolPattern.MatchString(d.LicensePool) {
				t.Fatalf("row %+v accepted", r)
			}
			emails[d.Email] = true
			users = append(users, v1.PlatformUser{Spec: d})
		}
		if len(s.Problems) > 0 {
			return
		}
		var buf bytes.Buffer
		if err := WriteCSV(&buf, users); err != nil {
			t.Fatal(err)
		}
		again := Parse(buf.Bytes())
		if len(again.Problems) != 0 || len(again.Rows) != len(users) {
			t.Fatalf("export of %+v reads back as %+v", users, again)
		}
		for i := range users {
			if d := again.Desired(again.Rows[i], &users[i].Spec); !Same(d, users[i].Spec) {
				t.Fatalf("export of %+v reads back as %+v", users[i].Spec, d)
			}
		}
	})
}
