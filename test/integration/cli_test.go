package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/userimport"
	"visio.dev/operator/internal/visioctl"
)

var (
	cliKubeconfigOnce sync.Once
	cliKubeconfig     string
)

// kubeconfigFile is a kubeconfig for a platform administrator, as a person
// running kubectl would have; --as impersonates others with it.
func kubeconfigFile(g Gomega) string {
	cliKubeconfigOnce.Do(func() {
		user, err := testEnv.AddUser(envtest.User{Name: "cli-admin", Groups: []string{"system:masters"}}, nil)
		g.Expect(err).NotTo(HaveOccurred())
		data, err := user.KubeConfig()
		g.Expect(err).NotTo(HaveOccurred())
		f, err := os.CreateTemp("", "visio-cli-kubeconfig-")
		g.Expect(err).NotTo(HaveOccurred())
		_, err = f.Write(data)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(f.Close()).To(Succeed())
		cliKubeconfig = f.Name()
	})
	g.Expect(cliKubeconfig).NotTo(BeEmpty())
	return cliKubeconfig
}

// cliResult is what a run of kubectl visio printed and returned.
type cliResult struct {
	code        int
	out, errOut string
}

// lastLine is the summary line of an import.
func (r cliResult) lastLine() string {
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	return lines[len(lines)-1]
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
}

// visio runs kubectl visio in process, as the platform administrator, with
// counter (when not nil) counting its API requests.
func visio(g Gomega, counter *writeCounter, args ...string) cliResult {
	flags := genericclioptions.NewConfigFlags(false)
	if counter != nil {
		flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
			c.WrapTransport = counter.wrap
			return c
		}
	}
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	code := visioctl.Run(ctx(), append([]string{"--kubeconfig", kubeconfigFile(g)}, args...), streams, flags)
	return cliResult{code, out.String(), errOut.String()}
}

func fixture(name string) string { return filepath.Join("testdata", "users", name) }

func usersByEmail(g Gomega, ns string) map[string]v1.PlatformUser {
	list := &v1.PlatformUserList{}
	g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
	out := map[string]v1.PlatformUser{}
	for _, u := range list.Items {
		out[u.Spec.Email] = u
	}
	return out
}

// TestCLIImportSpreadsheets imports the files Excel (French, Windows-1252),
// LibreOffice (UTF-8 with BOM) and Google Sheets write, checks every user
// field by field, and that importing them again, or importing an export,
// writes nothing at all.
func TestCLIImportSpreadsheets(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, 50, v1.EnforcementDeny)

	type want = v1.PlatformUserSpec
	files := []struct {
		file    string
		ignored string
		users   []want
	}{
		{"excel-fr-windows1252.csv", `Ignoring the columns "Civilité", "Fonction"`, []want{
			{Email: "marius.paris@quimper.example", GivenName: "Marius", FamilyName: "Pâris", Phone: "+33612345678", Country: "FR",
				PostalCode: "29000", TimeZone: "Europe/Paris", Role: v1.RoleAdministrator, Active: ptr.To(true)},
			{Email: "celine.legoff@quimper.example", GivenName: "Céline", FamilyName: "Le Goff", Phone: "+33298000001", Country: "FR",
				PostalCode: "29000", TimeZone: "Europe/Paris", Role: v1.RoleDelegatedOrganizer, Active: ptr.To(true)},
			{Email: "jn.kerherve@quimper.example", GivenName: "Jean-Noël", FamilyName: "Kerhervé", Country: "FR",
				PostalCode: "29000", TimeZone: "Europe/Paris", Role: v1.RoleUser, Active: ptr.To(false)},
			{Email: "francoise.oeuvray@quimper.example", GivenName: "Françoise", FamilyName: "Œuvray", Phone: "+3225551234", Country: "BE",
				PostalCode: "1000", TimeZone: "Europe/Brussels", Role: v1.RoleUser, Active: ptr.To(true)},
		}},
		{"libreoffice-utf8-bom.csv", `Ignoring the columns "Service"`, []want{
			{Email: "anne.morvan@brest.example", GivenName: "Anne", FamilyName: "Morvan", Country: "FR", PostalCode: "29200",
				Role: v1.RoleAdministrator, Active: ptr.To(true)},
			{Email: "yann.le-bihan@brest.example", GivenName: "Yann", FamilyName: "Le Bihan", Country: "DE", PostalCode: "29200",
				Role: v1.RoleDelegatedOrganizer, Active: ptr.To(false)},
			{Email: "loic.tanguy@brest.example", GivenName: "Loïc", FamilyName: "Tanguy", PostalCode: "29200",
				Role: v1.RoleUser, Active: ptr.To(true)},
		}},
		{"google-sheets-utf8.csv", `Ignoring the columns "Department"`, []want{
			{Email: "alice.martin@rennes.example", GivenName: "Alice", FamilyName: "Martin, née Durand", Phone: "+33611111111", Country: "FR",
				PostalCode: "35000", TimeZone: "Europe/Paris", Role: v1.RoleUser, Active: ptr.To(true)},
			{Email: "bob.nguyen@rennes.example", GivenName: "Bob", FamilyName: "Nguyen", Phone: "+14155550100", Country: "US",
				PostalCode: "94105", TimeZone: "America/Los_Angeles", Role: v1.RoleDelegatedOrganizer, Active: ptr.To(false)},
			{Email: "chloe.roux@rennes.example", GivenName: "Chloé", FamilyName: "Roux", Role: v1.RoleUser, Active: ptr.To(true)},
		}},
	}
	total := 0
	for _, f := range files {
		r := visio(g, nil, "users", "import", fixture(f.file), "-n", ns)
		g.Expect(r.code).To(Equal(0), "%s: %s", f.file, r)
		g.Expect(r.lastLine()).To(Equal(fmt.Sprintf("%d created, 0 updated, 0 unchanged, 0 refused", len(f.users))), f.file)
		g.Expect(r.errOut).To(Equal(f.ignored+"\n"), f.file)
		total += len(f.users)

		got := usersByEmail(g, ns)
		for _, w := range f.users {
			u, ok := got[w.Email]
			g.Expect(ok).To(BeTrue(), "%s: no user %s", f.file, w.Email)
			g.Expect(u.Spec).To(Equal(withDefaultPool(w)), "%s: %s", f.file, w.Email)
			managers := []string{}
			for _, m := range u.ManagedFields {
				managers = append(managers, m.Manager+"/"+string(m.Operation))
			}
			g.Expect(managers).To(ContainElement(visioctl.FieldManager+"/Apply"), "%s: %s", f.file, w.Email)
		}
	}
	g.Expect(usersByEmail(g, ns)).To(HaveLen(total))

	// Importing again changes nothing, and asks one list of the API server.
	for _, f := range files {
		counter := &writeCounter{}
		r := visio(g, counter, "users", "import", fixture(f.file), "-n", ns)
		g.Expect(r.code).To(Equal(0), "%s: %s", f.file, r)
		g.Expect(r.lastLine()).To(Equal(fmt.Sprintf("0 created, 0 updated, %d unchanged, 0 refused", len(f.users))), f.file)
		g.Expect(counter.snapshot()).To(Equal(map[string]int64{allWrites: 0}), "%s: writes", f.file)
		g.Expect(counter.reads.Load()).To(Equal(int64(1)), "%s: reads", f.file)
	}

	// An export reads back as no change, whatever the file it came from.
	exported := visio(g, nil, "users", "export", "-n", ns)
	g.Expect(exported.code).To(Equal(0), "%s", exported)
	g.Expect(exported.out).To(HavePrefix("email,givenName,familyName,phone,country,postalCode,timeZone,role,active,licensePool\n"))
	g.Expect(strings.Count(exported.out, "\n")).To(Equal(total + 1))
	g.Expect(exported.out).To(ContainSubstring(`alice.martin@rennes.example,Alice,"Martin, née Durand",+33611111111,FR,35000,Europe/Paris,User,true,default`))
	file := filepath.Join(t.TempDir(), "export.csv")
	g.Expect(os.WriteFile(file, []byte(exported.out), 0o600)).To(Succeed())
	counter := &writeCounter{}
	r := visio(g, counter, "users", "import", file, "-n", ns)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.lastLine()).To(Equal(fmt.Sprintf("0 created, 0 updated, %d unchanged, 0 refused", total)))
	g.Expect(counter.writes.Load()).To(BeZero())

	// The export imports whole into another entity, to the same users.
	_, ns2 := newEntity(t, g)
	newPool(g, ns2, v1.DefaultLicensePool, 50, v1.EnforcementDeny)
	r = visio(g, nil, "users", "import", file, "-n", ns2)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.lastLine()).To(Equal(fmt.Sprintf("%d created, 0 updated, 0 unchanged, 0 refused", total)))
	first, second := usersByEmail(g, ns), usersByEmail(g, ns2)
	for email, u := range first {
		g.Expect(second[email].Spec).To(Equal(u.Spec), email)
	}

	// A changed cell is one update, and the file's missing columns leave the
	// other fields alone; a field another manager set stays theirs.
	marius := first["marius.paris@quimper.example"]
	g.Expect(patch(k8s, &marius, `{"spec":{"postalCode":"29100"}}`)).To(Succeed())
	edit := filepath.Join(t.TempDir(), "edit.csv")
	g.Expect(os.WriteFile(edit, []byte("Courriel;Prénom;Nom\nmarius.paris@quimper.example;Marius;Pâris-Le Roux\nanne.morvan@brest.example;Anne;Morvan\n"), 0o600)).To(Succeed())
	counter = &writeCounter{}
	r = visio(g, counter, "users", "import", edit, "-n", ns)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.lastLine()).To(Equal("0 created, 1 updated, 1 unchanged, 0 refused"))
	g.Expect(r.out).To(ContainSubstring("line 2: marius.paris@quimper.example updated"))
	g.Expect(counter.snapshot()).To(Equal(map[string]int64{allWrites: 1, "platformusers": 1}))
	got := usersByEmail(g, ns)["marius.paris@quimper.example"].Spec
	g.Expect(got.FamilyName).To(Equal("Pâris-Le Roux"))
	g.Expect(got.PostalCode).To(Equal("29100"))
	g.Expect(got.Phone).To(Equal("+33612345678"))
	g.Expect(got.Role).To(Equal(v1.RoleAdministrator))

	// A field GitOps applies stays GitOps's: an import without that column
	// does not take it over, so GitOps can still remove it.
	loic := usersByEmail(g, ns)["loic.tanguy@brest.example"]
	flux := func(spec map[string]any) {
		u := userimport.Manifest(ns, loic.Name, v1.PlatformUserSpec{}, nil)
		u.Object["spec"] = spec
		g.Expect(k8s.Apply(ctx(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("flux"))).To(Succeed())
	}
	flux(map[string]any{"email": loic.Spec.Email, "timeZone": "Europe/Paris"})
	g.Expect(os.WriteFile(edit, []byte("email,givenName,familyName\nloic.tanguy@brest.example,Loïc,Tanguy-Le Gall\n"), 0o600)).To(Succeed())
	r = visio(g, nil, "users", "import", edit, "-n", ns)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.lastLine()).To(Equal("0 created, 1 updated, 0 unchanged, 0 refused"))
	loic = usersByEmail(g, ns)["loic.tanguy@brest.example"]
	g.Expect(loic.Spec.FamilyName).To(Equal("Tanguy-Le Gall"))
	g.Expect(userimport.Owned(loic.ManagedFields, visioctl.FieldManager)).NotTo(HaveKey(userimport.ColTimeZone))
	flux(map[string]any{"email": loic.Spec.Email})
	g.Expect(usersByEmail(g, ns)["loic.tanguy@brest.example"].Spec.TimeZone).To(BeEmpty())
}

func withDefaultPool(s v1.PlatformUserSpec) v1.PlatformUserSpec {
	if s.LicensePool == "" {
		s.LicensePool = v1.DefaultLicensePool
	}
	return s
}

// TestCLIImportInvalid: a file with problems writes nothing and says where
// each one is.
func TestCLIImportInvalid(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, 10, v1.EnforcementDeny)

	counter := &writeCounter{}
	r := visio(g, counter, "users", "import", fixture("invalid-fr.csv"), "-n", ns)
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.errOut).To(Equal(strings.Join([]string{
		`line 1: familyName: missing column: the file needs a column "familyName" (or "nom")`,
		`line 3: Courriel: not an email address: "pas-une-adresse"`,
		`line 4: Rôle: not a role: "Chef de service" (User, DelegatedOrganizer, Administrator, Concierge, or Utilisateur, Organisateur délégué, Administrateur)`,
		`line 5: Courriel: ok@lorient.example is also on line 2: one row per user`,
		`4 problems in ` + fixture("invalid-fr.csv") + `: nothing was written`,
	}, "\n") + "\n"))
	g.Expect(r.lastLine()).To(Equal("0 created, 0 updated, 0 unchanged, 0 refused"))
	g.Expect(counter.writes.Load()+counter.reads.Load()).To(BeZero(), "a file with problems needs no request")
	g.Expect(usersByEmail(g, ns)).To(BeEmpty())
}

// csvOfUsers writes n users of a domain as a Google Sheets file.
func csvOfUsers(t *testing.T, n int, domain string) string {
	var b strings.Builder
	b.WriteString("email,givenName,familyName,role,active\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "agent%04d@%s,Agent,Number %d,User,true\n", i, domain, i)
	}
	path := filepath.Join(t.TempDir(), fmt.Sprintf("users-%d.csv", n))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCLIImportIntoFullPool: 120 rows into a Deny pool of 100. A server dry
// run writes nothing; the import creates exactly 100 users and reports the
// other 20 with the pool's message, each on its line.
func TestCLIImportIntoFullPool(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	p := newPool(g, ns, v1.DefaultLicensePool, 100, v1.EnforcementDeny)
	file := csvOfUsers(t, 120, "full.example")

	r := visio(g, nil, "users", "import", file, "-n", ns, "--dry-run=server")
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.lastLine()).To(Equal("120 created, 0 updated, 0 unchanged, 0 refused (server dry run)"))
	g.Expect(usersByEmail(g, ns)).To(BeEmpty())
	got := &v1.LicensePool{}
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(p), got)).To(Succeed())
	g.Expect(got.Status.Reservations).To(BeEmpty(), "a dry run reserves nothing")

	r = visio(g, nil, "users", "import", file, "-n", ns)
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.lastLine()).To(Equal("100 created, 0 updated, 0 unchanged, 20 refused"))
	refused := strings.Split(strings.TrimRight(r.errOut, "\n"), "\n")
	g.Expect(refused).To(HaveLen(20))
	for i, line := range refused {
		// Rows are applied in file order: the last 20 find the pool full.
		g.Expect(line).To(HavePrefix(fmt.Sprintf("line %d: agent%04d@full.example: refused: ", 102+i, 101+i)))
		g.Expect(line).To(ContainSubstring(fmt.Sprintf(`license pool "default" of entity %q is full: 100/100 licenses used`, e.Name)))
	}
	g.Expect(usersByEmail(g, ns)).To(HaveLen(100))

	// Once licenses are granted, the same file creates the 20 others only.
	g.Expect(patch(k8s, p, `{"spec":{"licenses":120}}`)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(p), got)).To(Succeed())
		g.Expect(got.Status.Capacity).To(Equal(int32(120)))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	r = visio(g, nil, "users", "import", file, "-n", ns)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.lastLine()).To(Equal("20 created, 0 updated, 100 unchanged, 0 refused"))
}

// TestCLIReport: the report's numbers are the pools' status, the users by role
// and the rooms of each entity.
func TestCLIReport(t *testing.T) {
	g := NewWithT(t)
	eA, nsA := newEntity(t, g)
	eB, nsB := newEntity(t, g)
	expires := metav1.NewTime(time.Now().Add(48 * time.Hour).Truncate(time.Second))
	pa := newPool(g, nsA, v1.DefaultLicensePool, 3, v1.EnforcementQueue)
	g.Expect(patch(k8s, pa, fmt.Sprintf(`{"spec":{"grants":[{"name":"spring","licenses":1,"reason":"pilot","expiresAt":%q}]}}`, expires.UTC().Format(time.RFC3339)))).To(Succeed())
	newPool(g, nsA, "extra", 2, v1.EnforcementDeny)
	newPool(g, nsB, v1.DefaultLicensePool, 5, v1.EnforcementDeny)
	for i, role := range []v1.PlatformUserRole{v1.RoleUser, v1.RoleUser, v1.RoleUser, v1.RoleUser, v1.RoleUser, v1.RoleAdministrator, v1.RoleDelegatedOrganizer} {
		g.Expect(k8s.Create(ctx(), withRole(newUser(nsA, fmt.Sprintf("a%d", i), true), role))).To(Succeed())
	}
	g.Expect(k8s.Create(ctx(), withRole(newUser(nsB, "b0", true), v1.RoleAdministrator))).To(Succeed())
	g.Expect(k8s.Create(ctx(), room(nsA, "council"))).To(Succeed())
	// A sub-entity of A, with a pool of 2 and one user.
	child := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: eA.Name + "-c"},
		Spec: v1.EntitySpec{DisplayName: "Child of " + eA.Name, Parent: eA.Name, DeletionProtection: ptr.To(false)}}
	g.Expect(k8s.Create(ctx(), child)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), child) })
	g.Eventually(func() error {
		return k8s.Get(ctx(), client.ObjectKey{Name: child.NamespaceName()}, &corev1.Namespace{})
	}).WithTimeout(30 * time.Second).Should(Succeed())
	newPool(g, child.NamespaceName(), v1.DefaultLicensePool, 2, v1.EnforcementDeny)
	g.Expect(k8s.Create(ctx(), newUser(child.NamespaceName(), "c0", true))).To(Succeed())

	g.Eventually(func(g Gomega) {
		r := visio(g, nil, "report", "-A", "-o", "json")
		g.Expect(r.code).To(Equal(0), "%s", r)
		var rows []visioctl.EntityReport
		g.Expect(jsonUnmarshal(r.out, &rows)).To(Succeed())
		byName := map[string]visioctl.EntityReport{}
		for _, row := range rows {
			byName[row.Entity] = row
		}
		a, b := byName[eA.Name], byName[eB.Name]
		g.Expect(a.Namespace).To(Equal(nsA))
		g.Expect(a.LicenseCounts).To(Equal(sumPools(g, nsA)))
		g.Expect(a.LicenseCounts).To(Equal(v1.LicenseCounts{Capacity: 6, Used: 4, Available: 2, Pending: 3}))
		g.Expect(a.NextExpiry).NotTo(BeNil())
		g.Expect(a.NextExpiry.Equal(expires.Time)).To(BeTrue(), "next expiry %v, want %v", a.NextExpiry, expires)
		g.Expect(a.Users.Total).To(Equal(int32(7)))
		g.Expect(a.Users.ByRole).To(Equal(map[v1.PlatformUserRole]int32{v1.RoleUser: 5, v1.RoleAdministrator: 1, v1.RoleDelegatedOrganizer: 1}))
		g.Expect(a.Rooms).To(Equal(v1.VMRCounts{Total: 1, Ready: 1}))
		g.Expect(b.LicenseCounts).To(Equal(sumPools(g, nsB)))
		g.Expect(b.LicenseCounts).To(Equal(v1.LicenseCounts{Capacity: 5, Used: 1, Available: 4}))
		g.Expect(b.NextExpiry).To(BeNil())
		g.Expect(b.Parent).To(BeEmpty())
		g.Expect(b.Subtree).To(BeNil())
		// The child names its parent; the parent sums both.
		c := byName[child.Name]
		g.Expect(c.Parent).To(Equal(eA.Name))
		g.Expect(c.LicenseCounts).To(Equal(v1.LicenseCounts{Capacity: 2, Used: 1, Available: 1}))
		g.Expect(a.Subtree).NotTo(BeNil())
		g.Expect(*a.Subtree).To(Equal(visioctl.SubtreeReport{Children: []string{child.Name},
			LicenseCounts: v1.LicenseCounts{Capacity: 8, Used: 5, Available: 3, Pending: 3}, Users: 8, Rooms: v1.VMRCounts{Total: 1, Ready: 1}}))
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	r := visio(g, nil, "report", "-A")
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.out).To(MatchRegexp(`\n` + eA.Name + `\s+-\s+6\s+4\s+2\s.*\n` + child.Name + `\s+` + eA.Name + `\s+2\s+1\s+1\s.*\n` +
		eA.Name + ` \(subtree\)\s+-\s+8\s+5\s+3\s+3\s+0\s+-\s+8\s+-\s+-\s+-\s+1/1\n`))

	// The same numbers as CSV and as a table.
	r = visio(g, nil, "report", "-n", child.NamespaceName(), "-o", "csv")
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.out).To(Equal("entity,parent,namespace,capacity,used,available,pending,requested,nextExpiry,users,User,DelegatedOrganizer,Administrator,Concierge,roomsReady,roomsTotal\n" +
		fmt.Sprintf("%s,%s,%s,2,1,1,0,0,,1,1,0,0,0,0,0\n", child.Name, eA.Name, child.NamespaceName())))
	r = visio(g, nil, "report", "-n", nsA, "-o", "csv")
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.out).To(Equal("entity,parent,namespace,capacity,used,available,pending,requested,nextExpiry,users,User,DelegatedOrganizer,Administrator,Concierge,roomsReady,roomsTotal\n" +
		fmt.Sprintf("%s,,%s,6,4,2,3,0,%s,7,5,1,1,0,1,1\n", eA.Name, nsA, expires.UTC().Format(time.RFC3339))))
	r = visio(g, nil, "report", "-n", nsB)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.out).To(MatchRegexp(`^ENTITY\s+PARENT\s+CAPACITY\s+USED\s+AVAILABLE\s+PENDING\s+REQUESTED\s+NEXT EXPIRY\s+USERS\s+ORGANIZERS\s+ADMINISTRATORS\s+CONCIERGES\s+ROOMS\n` +
		eB.Name + `\s+-\s+5\s+1\s+4\s+0\s+0\s+-\s+0\s+0\s+1\s+0\s+0/0\n$`))
}

// sumPools adds up the status of the pools of ns.
func sumPools(g Gomega, ns string) v1.LicenseCounts {
	pools := &v1.LicensePoolList{}
	g.Expect(k8s.List(ctx(), pools, client.InNamespace(ns))).To(Succeed())
	var c v1.LicenseCounts
	for _, p := range pools.Items {
		c.Capacity += p.Status.Capacity
		c.Used += p.Status.Used
		c.Available += p.Status.Available
		c.Pending += p.Status.Pending
	}
	return c
}

// TestCLIAsAdministrator: an entity administrator imports into its own entity,
// is refused by RBAC elsewhere with a message that says so, and its report
// shows its entity only.
func TestCLIAsAdministrator(t *testing.T) {
	g := NewWithT(t)
	applyPlatformRoles(g)
	eA, nsA := newEntity(t, g)
	_, nsB := newEntity(t, g)
	newPool(g, nsA, v1.DefaultLicensePool, 10, v1.EnforcementDeny)
	newPool(g, nsB, v1.DefaultLicensePool, 10, v1.EnforcementDeny)
	admin := withRole(newUser(nsA, "admin", false), v1.RoleAdministrator)
	g.Expect(k8s.Create(ctx(), admin)).To(Succeed())
	eventuallyAllowed(g, admin.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", nsA, ""}, true)
	eventuallyAllowed(g, admin.Spec.Email, access{"get", v1.GroupVersion.Group, "entities", "", eA.Name}, true)
	as := []string{"--as", admin.Spec.Email, "--as-group", "system:authenticated"}

	r := visio(g, nil, append(as, "users", "import", fixture("google-sheets-utf8.csv"), "-n", nsA)...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.lastLine()).To(Equal("3 created, 0 updated, 0 unchanged, 0 refused"))

	r = visio(g, nil, append(as, "users", "import", fixture("google-sheets-utf8.csv"), "-n", nsB)...)
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.errOut).To(ContainSubstring(fmt.Sprintf("error: you may not read the users of namespace %q: only the administrators of its entity, concierges and platform administrators may", nsB)))
	g.Expect(usersByEmail(g, nsB)).To(BeEmpty())

	r = visio(g, nil, append(as, "report", "-n", nsA, "-o", "json")...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	var rows []visioctl.EntityReport
	g.Expect(jsonUnmarshal(r.out, &rows)).To(Succeed())
	g.Expect(rows).To(HaveLen(1))
	g.Expect(rows[0].Entity).To(Equal(eA.Name))
	g.Expect(rows[0].Users.Total).To(Equal(int32(4)))

	r = visio(g, nil, append(as, "report", "-A")...)
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.errOut).To(HavePrefix("error: you may not list entities (concierges and platform administrators may): use -n with your entity's namespace"))
	r = visio(g, nil, append(as, "report")...) // the kubeconfig's namespace is "default"
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.errOut).To(HavePrefix(`error: you may not list entities, nor read namespace "default": use -n with your entity's namespace`))
	r = visio(g, nil, append(as, "report", "-n", nsB)...)
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.errOut).To(ContainSubstring("forbidden"))
}

// TestCLIImportBenchmark measures an import of 2,000 rows into one entity and
// its re-import: time, and API requests per row. VISIO_BENCH=1 runs it.
func TestCLIImportBenchmark(t *testing.T) {
	if os.Getenv("VISIO_BENCH") == "" {
		t.Skip("set VISIO_BENCH=1 to measure an import of 2,000 rows")
	}
	const rows = 2000
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, rows, v1.EnforcementDeny)
	file := csvOfUsers(t, rows, "bench.example")

	for _, pass := range []struct{ name, summary string }{
		{"first import", fmt.Sprintf("%d created, 0 updated, 0 unchanged, 0 refused", rows)},
		{"re-import", fmt.Sprintf("0 created, 0 updated, %d unchanged, 0 refused", rows)},
	} {
		counter := &writeCounter{}
		start := time.Now()
		r := visio(g, counter, "users", "import", file, "-n", ns)
		elapsed := time.Since(start)
		g.Expect(r.code).To(Equal(0), "%s", r.errOut)
		g.Expect(r.lastLine()).To(Equal(pass.summary))
		w, rd := counter.writes.Load(), counter.reads.Load()
		t.Logf("%s of %d rows: %v (%.2f ms/row), %d writes (%.3f/row), %d reads (%.4f/row)",
			pass.name, rows, elapsed.Round(time.Millisecond), float64(elapsed.Microseconds())/1000/rows, w, float64(w)/rows, rd, float64(rd)/rows)
	}
	g.Expect(usersByEmail(g, ns)).To(HaveLen(rows))
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
