package userimport

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "visio.dev/operator/api/v1alpha1"
)

// Desired is the spec a row asks for: the row's values for the columns the
// file has and, for the columns it lacks, the live user's (nil for a new
// user: the API server's defaults apply). A file without a phone column so
// leaves phones alone, where a blank cell of a phone column removes one.
func (s *Sheet) Desired(r Row, live *v1.PlatformUserSpec) v1.PlatformUserSpec {
	if live == nil {
		live = &v1.PlatformUserSpec{}
	}
	d := *live.DeepCopy()
	d.Email = r.Spec.Email
	pick := func(col Column, dst *string, v string) {
		if s.Has[col] {
			*dst = v
		}
	}
	pick(ColGivenName, &d.GivenName, r.Spec.GivenName)
	pick(ColFamilyName, &d.FamilyName, r.Spec.FamilyName)
	pick(ColPhone, &d.Phone, r.Spec.Phone)
	pick(ColCountry, &d.Country, r.Spec.Country)
	pick(ColPostalCode, &d.PostalCode, r.Spec.PostalCode)
	pick(ColTimeZone, &d.TimeZone, r.Spec.TimeZone)
	pick(ColLicensePool, &d.LicensePool, r.Spec.LicensePool)
	if s.Has[ColRole] {
		d.Role = r.Spec.Role
	}
	if s.Has[ColActive] {
		a := *r.Spec.Active
		d.Active = &a
	}
	return d
}

// Same reports whether two specs declare the same user, a field the API
// server defaults counting as its default.
func Same(a, b v1.PlatformUserSpec) bool {
	return normalized(a) == normalized(b)
}

type flatSpec struct {
	email, given, family, phone, country, postal, tz, role, pool string
	active                                                       bool
}

func normalized(s v1.PlatformUserSpec) flatSpec {
	u := v1.PlatformUser{Spec: s}
	return flatSpec{s.Email, s.GivenName, s.FamilyName, s.Phone, s.Country, s.PostalCode, s.TimeZone,
		string(u.RoleOrDefault()), u.PoolName(), u.IsActive()}
}

// Manifest is the PlatformUser to apply: the spec's fields among only (every
// field the spec sets when only is nil; email and names always), so that
// server-side apply owns those and nothing else.
func Manifest(namespace, name string, s v1.PlatformUserSpec, only map[Column]bool) *unstructured.Unstructured {
	spec := map[string]any{"email": s.Email, "givenName": s.GivenName, "familyName": s.FamilyName}
	for col, v := range map[Column]string{ColPhone: s.Phone, ColCountry: s.Country, ColPostalCode: s.PostalCode,
		ColTimeZone: s.TimeZone, ColRole: string(s.Role), ColLicensePool: s.LicensePool} {
		if v != "" && (only == nil || only[col]) {
			spec[string(col)] = v
		}
	}
	if s.Active != nil && (only == nil || only[ColActive]) {
		spec[string(ColActive)] = *s.Active
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(v1.GroupVersion.String())
	u.SetKind("PlatformUser")
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// Owned are the columns whose fields manager owns in a user's spec, per its
// server-side apply managed fields. An import applies those and the file's
// columns: a field it stopped sending would be removed, and one it never
// sent stays with whoever set it.
func Owned(fields []metav1.ManagedFieldsEntry, manager string) map[Column]bool {
	out := map[Column]bool{}
	for _, f := range fields {
		if f.Manager != manager || f.Operation != metav1.ManagedFieldsOperationApply || f.FieldsV1 == nil {
			continue
		}
		var set struct {
			Spec map[string]any `json:"f:spec"`
		}
		if err := json.Unmarshal(f.FieldsV1.GetRawBytes(), &set); err != nil {
			continue
		}
		for _, col := range Columns {
			if _, ok := set.Spec["f:"+string(col)]; ok {
				out[col] = true
			}
		}
	}
	return out
}

// Fields are the columns an import applies to a user of which it owns owned.
func (s *Sheet) Fields(owned map[Column]bool) map[Column]bool {
	out := map[Column]bool{}
	for _, col := range Columns {
		out[col] = s.Has[col] || owned[col]
	}
	return out
}

// maxSlug bounds the readable part of a user name, leaving room for the hash.
const maxSlug = 40

// UserName is the name of the PlatformUser of an email: readable (from the
// address's local part), the same every time, and distinct for distinct
// addresses (a hash of the whole address ends it). It is a DNS-1123 label of at
// most 49 characters.
func UserName(email string) string {
	local, _, _ := strings.Cut(email, "@")
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)))
	ascii, _, err := transform.String(t, strings.ToLower(local))
	if err != nil {
		ascii = local
	}
	var b strings.Builder
	dash := false
	for _, r := range ascii {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				if b.Len()+2 > maxSlug {
					break
				}
				b.WriteByte('-')
			}
			dash = false
			if b.Len() >= maxSlug {
				break
			}
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	slug := b.String()
	if slug == "" {
		slug = "user"
	}
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return slug + "-" + hex.EncodeToString(sum[:4])
}

// WriteCSV writes users as CSV with the English header, `,` and UTF-8: what
// Parse reads back to the same specs.
func WriteCSV(w io.Writer, users []v1.PlatformUser) error {
	cw := csv.NewWriter(w)
	header := make([]string, len(Columns))
	for i, c := range Columns {
		header[i] = string(c)
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	for i := range users {
		u := &users[i]
		s := u.Spec
		if err := cw.Write([]string{s.Email, s.GivenName, s.FamilyName, s.Phone, s.Country, s.PostalCode, s.TimeZone,
			string(u.RoleOrDefault()), strconv.FormatBool(u.IsActive()), u.PoolName()}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
