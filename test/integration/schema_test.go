package integration

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// TestInvalidManifests is the specification of the API's validation: every
// manifest here is refused by the API server (schema, CEL or webhook) with a
// message naming the field, and nothing is stored.
func TestInvalidManifests(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	long := func(n int) string { return strings.Repeat("a", n) }

	entity := func(spec string) string {
		return "apiVersion: tenancy.visio.dev/v1alpha1\nkind: Entity\nmetadata: {name: invalid-entity}\nspec:\n" + spec
	}
	pool := func(spec string) string {
		return "apiVersion: tenancy.visio.dev/v1alpha1\nkind: LicensePool\nmetadata: {name: invalid-pool, namespace: " + ns + "}\nspec:\n" + spec
	}
	user := func(spec string) string {
		return "apiVersion: tenancy.visio.dev/v1alpha1\nkind: PlatformUser\nmetadata: {name: invalid-user, namespace: " + ns + "}\nspec:\n" + spec
	}
	const person = "  email: anne@rennes.example\n  givenName: Anne\n  familyName: Le Guen\n"
	vmr := func(spec string) string {
		return "apiVersion: tenancy.visio.dev/v1alpha1\nkind: VMR\nmetadata: {name: invalid-vmr, namespace: " + ns + "}\nspec:\n" + spec
	}
	const room = "  displayName: Conseil\n"

	cases := []struct {
		name     string
		manifest string
		want     []string // substrings of the error: the field, and what is wrong
	}{
		// Entity
		{"entity without displayName", entity("  contact: {email: a@b.fr}\n"), []string{"spec.displayName", "Required"}},
		{"entity with empty displayName", entity("  displayName: ''\n"), []string{"spec.displayName"}},
		{"entity displayName too long", entity("  displayName: " + long(257) + "\n"), []string{"spec.displayName", "256"}},
		{"entity namespace not a DNS label", entity("  displayName: X\n  namespace: Bad_NS\n"), []string{"spec.namespace"}},
		{"entity namespace too long", entity("  displayName: X\n  namespace: " + long(64) + "\n"), []string{"spec.namespace", "63"}},
		{"entity contact email invalid", entity("  displayName: X\n  contact: {email: not-an-email}\n"), []string{"spec.contact.email"}},
		{"entity contact phone not E.164", entity("  displayName: X\n  contact: {phone: '0299000000'}\n"), []string{"spec.contact.phone"}},
		{"entity contact empty", entity("  displayName: X\n  contact: {}\n"), []string{"spec.contact", "contact needs an email or a phone"}},
		{"entity deletionProtection not a boolean", entity("  displayName: X\n  deletionProtection: 'yes'\n"), []string{"spec.deletionProtection", "boolean"}},
		{"entity name too long for its namespace",
			"apiVersion: tenancy.visio.dev/v1alpha1\nkind: Entity\nmetadata: {name: " + long(57) + "}\nspec: {displayName: X}\n",
			[]string{"entity names are at most 56 characters"}},

		// LicensePool
		{"pool without licenses", pool("  enforcement: Deny\n"), []string{"spec.licenses", "Required"}},
		{"pool with negative licenses", pool("  licenses: -1\n"), []string{"spec.licenses", "greater than or equal to 0"}},
		{"pool with absurd licenses", pool("  licenses: 2000000\n"), []string{"spec.licenses", "less than or equal to 1000000"}},
		{"pool with unknown enforcement", pool("  licenses: 5\n  enforcement: Maybe\n"), []string{"spec.enforcement", "Unsupported value", "Deny", "Queue"}},
		{"grant of zero licenses", pool("  licenses: 5\n  grants: [{name: g, licenses: 0}]\n"), []string{"spec.grants[0].licenses"}},
		{"grant with invalid name", pool("  licenses: 5\n  grants: [{name: Bad Name, licenses: 1}]\n"), []string{"spec.grants[0].name"}},
		{"grant without name", pool("  licenses: 5\n  grants: [{licenses: 1}]\n"), []string{"spec.grants[0].name", "Required"}},
		{"grants with the same name", pool("  licenses: 5\n  grants: [{name: g, licenses: 1}, {name: g, licenses: 2}]\n"), []string{"spec.grants[1]", "Duplicate value"}},
		{"grant reason too long", pool("  licenses: 5\n  grants: [{name: g, licenses: 1, reason: " + long(257) + "}]\n"), []string{"spec.grants[0].reason"}},
		{"grant expiry not a time", pool("  licenses: 5\n  grants: [{name: g, licenses: 1, expiresAt: tomorrow}]\n"), []string{"spec.grants[0].expiresAt"}},
		{"more than 64 grants", pool("  licenses: 5\n  grants:\n" + manyGrants(65)), []string{"spec.grants", "Too many"}},

		// PlatformUser
		{"user without email", user("  givenName: Anne\n  familyName: Le Guen\n"), []string{"spec.email", "Required"}},
		{"user email without domain", user("  email: anne\n  givenName: A\n  familyName: B\n"), []string{"spec.email"}},
		{"user email with upper case", user("  email: Anne@Rennes.example\n  givenName: A\n  familyName: B\n"), []string{"spec.email"}},
		{"user email too long", user("  email: " + long(250) + "@x.fr\n  givenName: A\n  familyName: B\n"), []string{"spec.email", "254"}},
		{"user without givenName", user("  email: a@b.fr\n  familyName: B\n"), []string{"spec.givenName", "Required"}},
		{"user with empty givenName", user("  email: a@b.fr\n  givenName: ''\n  familyName: B\n"), []string{"spec.givenName"}},
		{"user familyName too long", user("  email: a@b.fr\n  givenName: A\n  familyName: " + long(129) + "\n"), []string{"spec.familyName", "128"}},
		{"user phone not E.164", user(person + "  phone: '06 12 34 56 78'\n"), []string{"spec.phone"}},
		{"user country in lower case", user(person + "  country: fr\n"), []string{"spec.country"}},
		{"user country of three letters", user(person + "  country: FRA\n"), []string{"spec.country"}},
		{"user postalCode too long", user(person + "  postalCode: '" + strings.Repeat("1", 17) + "'\n"), []string{"spec.postalCode"}},
		{"user timeZone with a shell", user(person + "  timeZone: 'Europe/Paris; rm'\n"), []string{"spec.timeZone"}},
		{"user timeZone unknown to IANA", user(person + "  timeZone: Mars/Olympus_Mons\n"), []string{"spec.timeZone", "not a known IANA time zone"}},
		{"user role unknown", user(person + "  role: Owner\n"), []string{"spec.role", "Unsupported value"}},
		{"user active not a boolean", user(person + "  active: 'yes'\n"), []string{"spec.active", "boolean"}},
		{"user licensePool not a name", user(person + "  licensePool: Bad Pool\n"), []string{"spec.licensePool"}},
		{"user outside an entity namespace",
			"apiVersion: tenancy.visio.dev/v1alpha1\nkind: PlatformUser\nmetadata: {name: stray, namespace: default}\nspec:\n" + person,
			[]string{"metadata.namespace", "belongs to no entity"}},

		// VMR
		{"room without displayName", vmr("  description: x\n"), []string{"spec.displayName", "Required"}},
		{"room displayName too long", vmr("  displayName: " + long(251) + "\n"), []string{"spec.displayName", "250"}},
		{"room description too long", vmr(room + "  description: " + long(251) + "\n"), []string{"spec.description", "250"}},
		{"room numericId too short", vmr(room + "  numericId: '12'\n"), []string{"spec.numericId"}},
		{"room numericId too long", vmr(room + "  numericId: '1234567890123'\n"), []string{"spec.numericId"}},
		{"room numericId not digits", vmr(room + "  numericId: '12ab'\n"), []string{"spec.numericId"}},
		{"room with 9 aliases", vmr(room + "  aliases: [a1, a2, a3, a4, a5, a6, a7, a8, a9]\n"), []string{"spec.aliases", "Too many"}},
		{"room alias in upper case", vmr(room + "  aliases: [Conseil@rennes.example]\n"), []string{"spec.aliases[0]"}},
		{"room alias too long", vmr(room + "  aliases: [" + long(251) + "]\n"), []string{"spec.aliases[0]", "250"}},
		{"room aliases repeated", vmr(room + "  aliases: [conseil, conseil]\n"), []string{"spec.aliases[1]", "Duplicate value"}},
		{"room numericId repeated in aliases", vmr(room + "  numericId: '123456'\n  aliases: ['123456']\n"), []string{"spec.aliases", "do not repeat it in aliases"}},
		{"room participantLimit zero", vmr(room + "  participantLimit: 0\n"), []string{"spec.participantLimit"}},
		{"room participantLimit too high", vmr(room + "  participantLimit: 1000001\n"), []string{"spec.participantLimit"}},
		{"room deletionPolicy unknown", vmr(room + "  deletionPolicy: Orphan\n"), []string{"spec.deletionPolicy", "Unsupported value"}},
		{"room pinSecretRef without name", vmr(room + "  pinSecretRef: {}\n"), []string{"spec.pinSecretRef.name", "Required"}},
		{"room owner not a name", vmr(room + "  owner: Anne Le Guen\n"), []string{"spec.owner"}},
		{"room allowGuests not a boolean", vmr(room + "  allowGuests: 1\n"), []string{"spec.allowGuests", "boolean"}},
	}
	if len(cases) < 40 {
		t.Fatalf("the table must hold at least 40 cases, has %d", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			obj := fromYAML(g, c.manifest)
			err := k8s.Create(ctx(), obj)
			g.Expect(err).To(HaveOccurred(), "the API server accepted:\n%s", c.manifest)
			for _, w := range c.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
			// Nothing was stored.
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(obj.GroupVersionKind())
			g.Expect(isNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(obj), got))).To(BeTrue())
		})
	}
}

func manyGrants(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  - {name: g%d, licenses: 1}\n", i)
	}
	return b.String()
}

// TestEntityNamespaceImmutable checks the transition rules of spec.namespace.
// Merge patches carry no resourceVersion, so the controller's status writes do
// not get in the way.
func TestEntityNamespaceImmutable(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	setNS := func(value string) error {
		patch := fmt.Sprintf(`{"spec":{"namespace":%q}}`, value)
		if value == "" {
			patch = `{"spec":{"namespace":null}}`
		}
		return k8s.Patch(ctx(), &v1.Entity{ObjectMeta: e.ObjectMeta}, client.RawPatch(types.MergePatchType, []byte(patch)))
	}
	err := setNS("elsewhere")
	g.Expect(err).To(MatchError(ContainSubstring("spec.namespace")))
	g.Expect(err).To(MatchError(ContainSubstring("namespace must stay the namespace already in use")))
	g.Expect(setNS(ns)).To(Succeed(), "setting the namespace already in use is allowed")
	g.Expect(setNS("elsewhere")).To(MatchError(ContainSubstring("namespace is immutable once set")))
	g.Expect(setNS("")).To(MatchError(ContainSubstring("namespace cannot be removed once set")))
}
