package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/controller"
	"visio.dev/operator/internal/operator"
)

// rbacTimeout bounds the wait for a binding the operator writes to reach the
// API server's authorizer. The machine is shared: generous, never asserted on.
const rbacTimeout = 90 * time.Second

// applyPlatformRoles installs the ClusterRoles of config/rbac/roles.yaml, as
// the chart does: the envtest API server has only the CRDs and webhooks. The
// file is decoded strictly, so a misspelt field fails here, and each role is
// checked for wildcards, which the project does not ship.
func applyPlatformRoles(g Gomega) {
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "roles.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	names := map[string]bool{}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		role := &rbacv1.ClusterRole{}
		g.Expect(yaml.UnmarshalStrict([]byte(doc), role)).To(Succeed())
		if role.Name == "" {
			continue
		}
		g.Expect(role.Kind).To(Equal("ClusterRole"))
		for _, r := range role.Rules {
			g.Expect(append(append(r.Verbs, r.Resources...), r.APIGroups...)).NotTo(ContainElement("*"), "wildcard in %s", role.Name)
		}
		names[role.Name] = true
		existing := &rbacv1.ClusterRole{}
		switch err := k8s.Get(ctx(), client.ObjectKeyFromObject(role), existing); {
		case apierrors.IsNotFound(err):
			g.Expect(k8s.Create(ctx(), role)).To(Succeed())
		case err == nil:
			existing.Rules = role.Rules
			g.Expect(k8s.Update(ctx(), existing)).To(Succeed())
		default:
			g.Expect(err).NotTo(HaveOccurred())
		}
	}
	// The roles the operator binds, and those the platform team binds.
	g.Expect(names).To(HaveKey(controller.ClusterRoleEntityAdministrator))
	g.Expect(names).To(HaveKey(controller.ClusterRoleEntityDelegator))
	g.Expect(names).To(HaveKey(controller.ClusterRoleConcierge))
	g.Expect(names).To(HaveKey("visio-platform-admin"))
	g.Expect(names).To(HaveKey("visio-viewer"))
}

// impersonate is a client that acts as username, an authenticated person
// with no group the platform knows unless given.
func impersonate(g Gomega, username string, groups ...string) client.Client {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: username, Groups: append([]string{"system:authenticated"}, groups...)}
	cl, err := client.New(c, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	return cl
}

// access is one question for the API server's authorizer.
type access struct{ verb, group, resource, namespace, name string }

func (a access) String() string {
	return strings.TrimSpace(a.verb + " " + a.resource + " " + a.name + " in " + a.namespace)
}

// allowed asks the API server's authorizer, as a SubjectAccessReview, whether
// username may do a.
func allowed(g Gomega, username string, a access) bool {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: username, Groups: []string{"system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace, Name: a.name,
		},
	}}
	g.Expect(k8s.Create(ctx(), sar)).To(Succeed())
	return sar.Status.Allowed
}

// eventuallyAllowed waits until the operator's bindings let username do a (or,
// with want=false, no longer let it).
func eventuallyAllowed(g Gomega, username string, a access, want bool) {
	g.Eventually(func() bool { return allowed(g, username, a) }).WithTimeout(rbacTimeout).WithPolling(250*time.Millisecond).
		Should(Equal(want), "%s: %s should be allowed=%v", username, a, want)
}

// verdict is how the API server answered an attempt.
type verdict string

const (
	accepted          verdict = "allowed"
	deniedByRBAC      verdict = "denied by RBAC"
	deniedByAdmission verdict = "denied by admission"
)

func verdictOf(err error) verdict {
	switch {
	case err == nil:
		return accepted
	case strings.Contains(err.Error(), "admission webhook"), isPolicyDenial(err):
		return deniedByAdmission
	case apierrors.IsForbidden(err):
		return deniedByRBAC
	default:
		return verdict("unexpected error: " + err.Error())
	}
}

// attempts records what each person tried and how the API server answered;
// each attempt is an assertion.
type attempts struct {
	t               *testing.T
	g               Gomega
	allowed, denied int
	// webhooks: the admission webhooks are called in this run.
	webhooks bool
	// rows is the table of attempts, verdicts and the layer that decided.
	rows []string
}

// layerOf names the layer that gave a verdict.
func layerOf(v verdict, err error) string {
	switch {
	case v == deniedByRBAC:
		return "RBAC"
	case v == deniedByAdmission && isPolicyDenial(err):
		return "admission policy"
	case v == deniedByAdmission:
		return "webhook"
	}
	return "-"
}

// policy is an attempt that an admission policy refuses, so with or without
// the webhooks (the webhook may answer first when it is called).
func (a *attempts) policy(who, what string, err error, detail ...string) {
	a.t.Helper()
	a.expect(who, what, deniedByAdmission, err, detail...)
	if !a.webhooks {
		a.g.Expect(isPolicyDenial(err)).To(BeTrue(), "%s: %s: without webhooks only a policy refuses it: %v", who, what, err)
	}
}

// admission is an attempt that only admission refuses: with the webhooks it
// must be refused (and say detail); without them it is stored, and without
// says what keeps it from having an effect (the caller checks that outcome).
func (a *attempts) admission(who, what string, err error, without string, detail ...string) {
	a.t.Helper()
	if a.webhooks {
		a.expect(who, what, deniedByAdmission, err, detail...)
		return
	}
	a.g.Expect(verdictOf(err)).To(Equal(accepted), "%s: %s: without webhooks nothing refuses it: %v", who, what, err)
	a.allowed++
	a.rows = append(a.rows, fmt.Sprintf("%-9s | %-60s | stored      | %s", who, what, without))
	a.t.Logf("%-9s %-64s stored; %s", who, what, without)
}

// table logs every attempt with its verdict and layer.
func (a *attempts) table() {
	mode := "with webhooks"
	if !a.webhooks {
		mode = "without webhooks"
	}
	a.t.Logf("impersonation table (%s):\n%s", mode, strings.Join(a.rows, "\n"))
}

// expect asserts that an attempt got the verdict wanted and, for a denial,
// that the message says why (detail).
func (a *attempts) expect(who, what string, want verdict, err error, detail ...string) {
	a.t.Helper()
	got := verdictOf(err)
	a.g.Expect(got).To(Equal(want), "%s: %s: %v", who, what, err)
	for _, d := range detail {
		a.g.Expect(err.Error()).To(ContainSubstring(d), "%s: %s", who, what)
	}
	if want == accepted {
		a.allowed++
	} else {
		a.denied++
	}
	a.rows = append(a.rows, fmt.Sprintf("%-9s | %-60s | %-11s | %s", who, what, got, layerOf(got, err)))
	a.t.Logf("%-9s %-64s %s", who, what, got)
}

// patch applies a JSON merge patch to obj as c, as `kubectl patch --type=merge`
// would: no resourceVersion, so a status written meanwhile by the operator
// cannot turn an attempt into a conflict.
func patch(c client.Client, obj client.Object, doc string) error {
	return c.Patch(ctx(), obj, client.RawPatch(types.MergePatchType, []byte(doc)))
}

// pool is the default LicensePool of ns, by name.
func pool(ns string) *v1.LicensePool {
	return &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v1.DefaultLicensePool}}
}

func withRole(u *v1.PlatformUser, role v1.PlatformUserRole) *v1.PlatformUser {
	u.Spec.Role = role
	return u
}

func room(ns, name string) *v1.VMR {
	return &v1.VMR{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.VMRSpec{DisplayName: "Room " + name}}
}

// waitRoomPINs waits until the operator has generated the PIN Secret of a room.
func waitRoomPINs(g Gomega, r *v1.VMR) string {
	got := &v1.VMR{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(r), got)).To(Succeed())
		g.Expect(got.Status.PINSecretName).NotTo(BeEmpty())
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: r.Namespace, Name: got.Status.PINSecretName}, &corev1.Secret{})).To(Succeed())
	}).WithTimeout(60 * time.Second).Should(Succeed())
	return got.Status.PINSecretName
}

// TestRBACRoleTable acts as each kind of person of the platform and checks
// the seed's role table as real permissions: RBAC the operator ships and
// binds, and the admission checks RBAC cannot express.
//
// It runs twice: with the webhooks, and on a cluster where their
// configuration is missing. Each attempt's verdict names the layer that gave
// it; an attempt only the webhook refuses is stored in the second run, and
// the test checks that the controllers give it no effect.
func TestRBACRoleTable(t *testing.T) { inBothModes(t, roleTable) }

func roleTable(t *testing.T, webhooks bool) {
	g := NewWithT(t)
	applyPlatformRoles(g)

	_, nsS := platformEntityForTest(t, g) // the platform entity: its support staff are the concierges
	entA, nsA := newEntity(t, g)
	entB, nsB := newEntity(t, g)
	for _, ns := range []string{nsA, nsB, nsS} {
		newPool(g, ns, v1.DefaultLicensePool, 10, v1.EnforcementDeny)
	}

	// The people, created by the platform team (a platform administrator).
	alice := withRole(newUser(nsA, "alice", true), v1.RoleAdministrator)
	dave := newUser(nsA, "dave", true)
	olga := withRole(newUser(nsA, "olga", true), v1.RoleDelegatedOrganizer)
	pat := withRole(newUser(nsS, "pat", false), v1.RoleAdministrator) // an administrator of the platform entity
	bob := withRole(newUser(nsB, "bob", true), v1.RoleAdministrator)
	bea := newUser(nsB, "bea", true)
	carol := withRole(newUser(nsS, "carol", false), v1.RoleConcierge)
	for _, u := range []*v1.PlatformUser{alice, dave, olga, pat, bob, bea, carol} {
		g.Expect(k8s.Create(ctx(), u)).To(Succeed())
	}

	// Wait for the bindings the operator generates.
	eventuallyAllowed(g, alice.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", nsA, ""}, true)
	eventuallyAllowed(g, alice.Spec.Email, access{"get", v1.GroupVersion.Group, "entities", "", entA.Name}, true)
	eventuallyAllowed(g, bob.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", nsB, ""}, true)
	eventuallyAllowed(g, carol.Spec.Email, access{"create", v1.GroupVersion.Group, "vmrs", nsB, ""}, true)

	asAlice := impersonate(g, alice.Spec.Email)
	asCarol := impersonate(g, carol.Spec.Email)
	asDave := impersonate(g, dave.Spec.Email)
	asOlga := impersonate(g, olga.Spec.Email)
	at := &attempts{t: t, g: g, webhooks: webhooks}
	defer at.table()
	strays := []client.Object{}
	t.Cleanup(func() {
		for _, o := range strays {
			_ = k8s.Delete(ctx(), o)
		}
	})
	strayRoom := func(name string) client.Object {
		g.Eventually(func(g Gomega) {
			r := room("default", name)
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(r), r)).To(Succeed())
			g.Expect(meta.FindStatusCondition(r.Status.Conditions, v1.StalledCondition)).To(HaveField("Reason", v1.ReasonNotInEntityNamespace))
			g.Expect(r.Status.BackendRef).To(BeEmpty())
		}).WithTimeout(60 * time.Second).Should(Succeed())
		return room("default", name)
	}

	// The platform team puts a Concierge in a customer entity.
	erin := withRole(newUser(nsA, "erin", false), v1.RoleConcierge)
	at.policy("platform", "create a Concierge in entity A", k8s.Create(ctx(), erin), "platform entity", "spec.role")

	// A concierge provisions permanent rooms for any entity (ManagePermanentVMRs)
	// and sees every entity (ViewAllEntities, ViewAllStatistics).
	roomA, roomB := room(nsA, "council"), room(nsB, "board")
	at.expect("concierge", "create a VMR in entity A", accepted, asCarol.Create(ctx(), roomA))
	at.expect("concierge", "create a VMR in entity B", accepted, asCarol.Create(ctx(), roomB))
	pinsA, pinsB := waitRoomPINs(g, roomA), waitRoomPINs(g, roomB)
	eventuallyAllowed(g, carol.Spec.Email, access{"get", "", "secrets", nsB, pinsB}, true)
	notPIN := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "not-a-pin"}, StringData: map[string]string{"token": "x"}}
	g.Expect(k8s.Create(ctx(), notPIN)).To(Succeed())
	at.expect("concierge", "read a Secret of entity B that holds no PINs", deniedByRBAC,
		asCarol.Get(ctx(), client.ObjectKeyFromObject(notPIN), &corev1.Secret{}))
	at.expect("concierge", "edit a VMR of entity B", accepted, patch(asCarol, roomB, `{"spec":{"description":"Monthly board meeting"}}`))
	at.expect("concierge", "read the PIN Secret of a room of entity B", accepted,
		asCarol.Get(ctx(), client.ObjectKey{Namespace: nsB, Name: pinsB}, &corev1.Secret{}))
	at.expect("concierge", "list every Entity", accepted, asCarol.List(ctx(), &v1.EntityList{}))
	at.expect("concierge", "list PlatformUsers of all entities", accepted, asCarol.List(ctx(), &v1.PlatformUserList{}))
	at.expect("concierge", "list LicensePools of all entities", accepted, asCarol.List(ctx(), &v1.LicensePoolList{}))
	at.expect("concierge", "list events of all namespaces", accepted, asCarol.List(ctx(), &corev1.EventList{}))
	at.expect("concierge", "create a Concierge in the support entity", accepted,
		asCarol.Create(ctx(), withRole(newUser(nsS, uniqueName("carl"), false), v1.RoleConcierge)))
	at.expect("concierge", "read the license pool of entity B", accepted, asCarol.Get(ctx(), client.ObjectKeyFromObject(pool(nsB)), pool(nsB)))
	at.expect("concierge", "raise the licenses of entity B", deniedByRBAC, patch(asCarol, pool(nsB), `{"spec":{"licenses":100}}`))
	at.expect("concierge", "create an Entity", deniedByRBAC, asCarol.Create(ctx(), &v1.Entity{
		ObjectMeta: metav1.ObjectMeta{Name: "rogue"}, Spec: v1.EntitySpec{DisplayName: "Rogue"}}))
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "not-a-pin-" + nsA}}
	g.Expect(k8s.Create(ctx(), secret)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), secret) })
	at.expect("concierge", "read a Secret outside the entity namespaces", deniedByRBAC,
		asCarol.Get(ctx(), client.ObjectKeyFromObject(secret), &corev1.Secret{}))
	at.expect("concierge", "list the Secrets of entity B", deniedByRBAC, asCarol.List(ctx(), &corev1.SecretList{}, client.InNamespace(nsB)))
	at.admission("concierge", "create a VMR outside the entity namespaces", asCarol.Create(ctx(), room("default", "stray-c")),
		"controller: NotInEntityNamespace, never provisioned", "belongs to no entity")
	if !webhooks {
		strays = append(strays, strayRoom("stray-c"))
	}
	doomed := room(nsA, "doomed")
	g.Expect(asCarol.Create(ctx(), doomed)).To(Succeed())
	at.expect("concierge", "delete a VMR of entity A", accepted, asCarol.Delete(ctx(), doomed))

	// An entity administrator creates, edits, activates and deactivates the
	// users of its entity (ManageEntityUsers) and sees its usage
	// (ViewEntityStatistics)...
	frank := newUser(nsA, "frank", true)
	at.expect("admin A", "create a User in entity A", accepted, asAlice.Create(ctx(), frank))
	at.expect("admin A", "read a user of entity A", accepted, asAlice.Get(ctx(), client.ObjectKeyFromObject(frank), frank))
	at.expect("admin A", "list the users of entity A", accepted, asAlice.List(ctx(), &v1.PlatformUserList{}, client.InNamespace(nsA)))
	at.expect("admin A", "edit a user of entity A", accepted, patch(asAlice, frank, `{"spec":{"givenName":"François","timeZone":"Europe/Paris"}}`))
	at.expect("admin A", "deactivate a user of entity A", accepted, patch(asAlice, frank, `{"spec":{"active":false}}`))
	at.expect("admin A", "reactivate a user of entity A", accepted, patch(asAlice, frank, `{"spec":{"active":true}}`))
	gail := withRole(newUser(nsA, "gail", false), v1.RoleDelegatedOrganizer)
	at.expect("admin A", "create a DelegatedOrganizer in entity A", accepted, asAlice.Create(ctx(), gail))
	at.expect("admin A", "make a user of entity A an Administrator", accepted, patch(asAlice, gail, `{"spec":{"role":"Administrator"}}`))
	at.expect("admin A", "delete a user of entity A", accepted, asAlice.Delete(ctx(), gail))
	at.expect("admin A", "read its own Entity", accepted, asAlice.Get(ctx(), client.ObjectKeyFromObject(entA), &v1.Entity{}))
	at.expect("admin A", "read the license pools of entity A", accepted, asAlice.List(ctx(), &v1.LicensePoolList{}, client.InNamespace(nsA)))
	at.expect("admin A", "read the VMRs of entity A", accepted, asAlice.List(ctx(), &v1.VMRList{}, client.InNamespace(nsA)))
	at.expect("admin A", "read the events of entity A", accepted, asAlice.List(ctx(), &corev1.EventList{}, client.InNamespace(nsA)))

	// ...and nothing else.
	at.expect("admin A", "read Entity B", deniedByRBAC, asAlice.Get(ctx(), client.ObjectKeyFromObject(entB), &v1.Entity{}))
	at.expect("admin A", "list every Entity", deniedByRBAC, asAlice.List(ctx(), &v1.EntityList{}))
	at.expect("admin A", "edit its own Entity", deniedByRBAC, patch(asAlice, entA.DeepCopy(), `{"spec":{"displayName":"Renamed by its administrator"}}`))
	at.expect("admin A", "delete its own Entity", deniedByRBAC, asAlice.Delete(ctx(), entA.DeepCopy()))
	at.expect("admin A", "create a user in entity B", deniedByRBAC, asAlice.Create(ctx(), newUser(nsB, "intruder", false)))
	at.expect("admin A", "list the users of entity B", deniedByRBAC, asAlice.List(ctx(), &v1.PlatformUserList{}, client.InNamespace(nsB)))
	at.expect("admin A", "deactivate a user of entity B", deniedByRBAC, patch(asAlice, bea.DeepCopy(), `{"spec":{"active":false}}`))
	at.expect("admin A", "delete a user of entity B", deniedByRBAC, asAlice.Delete(ctx(), bea.DeepCopy()))
	at.expect("admin A", "raise the licenses of its LicensePool", deniedByRBAC, patch(asAlice, pool(nsA), `{"spec":{"licenses":1000}}`))
	at.expect("admin A", "delete its LicensePool", deniedByRBAC, asAlice.Delete(ctx(), pool(nsA)))
	at.expect("admin A", "create a second LicensePool", deniedByRBAC, asAlice.Create(ctx(), &v1.LicensePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "more"}, Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](50)}}))
	at.expect("admin A", "write the status of a user of entity A", deniedByRBAC,
		asAlice.Status().Patch(ctx(), frank.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"status":{"licensePool":"more"}}`))))
	fake := withRole(newUser(nsA, "fake-concierge", false), v1.RoleConcierge)
	// The admission policy refuses these with or without the webhooks; when
	// neither runs, the controller gives such a user nothing (TestSecurity).
	// Two policies refuse these (the role outside the platform entity, and a
	// grant by someone who may not grant it): either may answer first.
	at.policy("admin A", "create a Concierge in entity A", asAlice.Create(ctx(), fake), "spec.role", "Concierge")
	at.policy("admin A", "make a user of entity A a Concierge", patch(asAlice, frank, `{"spec":{"role":"Concierge"}}`),
		"spec.role", "Concierge")
	at.policy("admin A", "make itself a Concierge", patch(asAlice, alice.DeepCopy(), `{"spec":{"role":"Concierge"}}`),
		"spec.role", "Concierge")
	// The email is the RBAC subject: writing an address of one's own on a
	// Concierge would make oneself Concierge.
	at.expect("admin A", "take over a Concierge by its email", deniedByRBAC,
		patch(asAlice, carol.DeepCopy(), `{"spec":{"email":"alice.concierge@`+nsA+`.example"}}`))
	// Within the platform entity, its own administrators are platform staff:
	// RBAC lets them edit users there, and the grant-concierge check (admission
	// policy and webhook) keeps them from granting the role.
	asPat := impersonate(g, pat.Spec.Email)
	eventuallyAllowed(g, pat.Spec.Email, access{"update", v1.GroupVersion.Group, "platformusers", nsS, ""}, true)
	at.policy("admin P", "take over a Concierge of the platform by its email",
		patch(asPat, carol.DeepCopy(), `{"spec":{"email":"pat.concierge@`+nsS+`.example"}}`), "spec.email", "Concierge")
	at.policy("admin P", "make itself a Concierge", patch(asPat, pat.DeepCopy(), `{"spec":{"role":"Concierge"}}`),
		"spec.role", "Concierge")
	at.expect("admin A", "read the PIN Secret of a room of entity B", deniedByRBAC,
		asAlice.Get(ctx(), client.ObjectKey{Namespace: nsB, Name: pinsB}, &corev1.Secret{}))
	at.expect("admin A", "read the PIN Secret of a room of entity A", deniedByRBAC,
		asAlice.Get(ctx(), client.ObjectKey{Namespace: nsA, Name: pinsA}, &corev1.Secret{}))
	at.expect("admin A", "list the Secrets of entity A", deniedByRBAC, asAlice.List(ctx(), &corev1.SecretList{}, client.InNamespace(nsA)))
	at.expect("admin A", "create a VMR in entity A", deniedByRBAC, asAlice.Create(ctx(), room(nsA, "self-made")))
	at.expect("admin A", "bind itself to the concierge role", deniedByRBAC, asAlice.Create(ctx(), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "me-too"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controller.ClusterRoleConcierge},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: alice.Spec.Email}},
	}))

	// Admission keeps entity administrators off their pools even when someone
	// binds them more widely than the shipped roles do.
	wide := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "too-wide"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "visio-platform-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: alice.Spec.Email}},
	}
	g.Expect(k8s.Create(ctx(), wide)).To(Succeed())
	eventuallyAllowed(g, alice.Spec.Email, access{"update", v1.GroupVersion.Group, "licensepools", nsA, ""}, true)
	at.admission("admin A", "raise its licenses with a wider binding", patch(asAlice, pool(nsA), `{"spec":{"licenses":1000}}`),
		"none: RBAC misconfigured by a platform admin; only the webhook refuses", "ask the platform")
	at.admission("admin A", "delete its LicensePool with a wider binding", asAlice.Delete(ctx(), pool(nsA)),
		"none: RBAC misconfigured by a platform admin; only the webhook refuses", "ask the platform")
	g.Expect(k8s.Delete(ctx(), wide)).To(Succeed())

	// Users and delegated organizers work in the conferencing portal: no
	// Kubernetes access at all.
	at.expect("user", "create a user in its entity", deniedByRBAC, asDave.Create(ctx(), newUser(nsA, "friend", false)))
	at.expect("user", "make itself Administrator", deniedByRBAC, patch(asDave, dave.DeepCopy(), `{"spec":{"role":"Administrator"}}`))
	at.expect("user", "read the users of its entity", deniedByRBAC, asDave.List(ctx(), &v1.PlatformUserList{}, client.InNamespace(nsA)))
	at.expect("user", "create a VMR in its entity", deniedByRBAC, asDave.Create(ctx(), room(nsA, "mine")))
	at.expect("user", "raise the licenses of its entity", deniedByRBAC, patch(asDave, pool(nsA), `{"spec":{"licenses":1000}}`))
	at.expect("user", "delete its Entity", deniedByRBAC, asDave.Delete(ctx(), entA.DeepCopy()))
	at.expect("organizer", "create a user in its entity", deniedByRBAC, asOlga.Create(ctx(), newUser(nsA, "guest", false)))
	at.expect("organizer", "deactivate a user of its entity", deniedByRBAC, patch(asOlga, dave.DeepCopy(), `{"spec":{"active":false}}`))

	// Platform administrators may do anything RBAC allows, but users, pools and
	// rooms still live in entity namespaces only.
	strayUser := withRole(newUser("default", "stray", true), v1.RoleAdministrator)
	strayPool := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "stray"}, Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](1)}}
	strayUser.Spec.LicensePool = strayPool.Name
	at.admission("platform", "create a PlatformUser outside the entity namespaces", k8s.Create(ctx(), strayUser),
		"controller: NotInEntityNamespace, no license, no binding", "belongs to no entity")
	at.admission("platform", "create a LicensePool outside the entity namespaces", k8s.Create(ctx(), strayPool),
		"controller: NotInEntityNamespace, licenses nobody", "belongs to no entity")
	at.admission("platform", "create a VMR outside the entity namespaces", k8s.Create(ctx(), room("default", "stray-p")),
		"controller: NotInEntityNamespace, never provisioned", "belongs to no entity")
	if !webhooks {
		strays = append(strays, strayUser, strayPool, strayRoom("stray-p"))
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(strayUser), strayUser)).To(Succeed())
			g.Expect(meta.FindStatusCondition(strayUser.Status.Conditions, v1.StalledCondition)).To(HaveField("Reason", v1.ReasonNotInEntityNamespace))
			g.Expect(meta.IsStatusConditionTrue(strayUser.Status.Conditions, v1.LicensedCondition)).To(BeFalse())
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(strayPool), strayPool)).To(Succeed())
			g.Expect(strayPool.Status.Used).To(BeZero())
		}).WithTimeout(60 * time.Second).Should(Succeed())
		g.Expect(allowed(g, strayUser.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", "default", ""})).To(BeFalse())
	}
	at.expect("platform", "create a Concierge", accepted, k8s.Create(ctx(), withRole(newUser(nsS, "cora", false), v1.RoleConcierge)))

	t.Logf("%d attempts: %d allowed, %d denied", at.allowed+at.denied, at.allowed, at.denied)
	g.Expect(at.allowed + at.denied).To(BeNumerically(">=", 25))
}

// bindingSubjects reads a RoleBinding or ClusterRoleBinding into obj and
// returns the names of its subjects.
func bindingSubjects(g Gomega, obj client.Object) []string {
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	var subs []rbacv1.Subject
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		subs = b.Subjects
	case *rbacv1.ClusterRoleBinding:
		subs = b.Subjects
	}
	names := make([]string, 0, len(subs))
	for _, s := range subs {
		names = append(names, s.Name)
	}
	return names
}

// TestRBACBindingsFollowRoles changes people's roles, activity, email and
// existence, and checks that the bindings, and so the permissions, follow:
// an inactive administrator keeps administering (seed 000), a deleted one
// loses its rights, and hand edits of the generated bindings are undone.
func TestRBACBindingsFollowRoles(t *testing.T) {
	g := NewWithT(t)
	applyPlatformRoles(g)
	ent, ns := platformEntityForTest(t, g) // its concierges count
	_, other := newEntity(t, g)
	newPool(g, ns, v1.DefaultLicensePool, 5, v1.EnforcementDeny)

	manageUsers := access{"create", v1.GroupVersion.Group, "platformusers", ns, ""}
	readEntity := access{"get", v1.GroupVersion.Group, "entities", "", ent.Name}
	admins := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "visio-entity-administrators"}}
	reader := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "visio-entity-" + ent.Name + "-reader"}}

	alice := withRole(newUser(ns, "alice", true), v1.RoleAdministrator)
	g.Expect(k8s.Create(ctx(), alice)).To(Succeed())
	eventuallyAllowed(g, alice.Spec.Email, manageUsers, true)
	eventuallyAllowed(g, alice.Spec.Email, readEntity, true)
	g.Expect(bindingSubjects(g, admins)).To(Equal([]string{alice.Spec.Email}))
	g.Expect(admins.RoleRef.Name).To(Equal(controller.ClusterRoleEntityAdministrator))
	g.Expect(metav1.IsControlledBy(admins, ent)).To(BeTrue(), "the binding goes with its entity")

	// Seed 000: an administrator who plans no meeting deactivates himself, frees
	// his license and keeps administering.
	asAlice := impersonate(g, alice.Spec.Email)
	g.Expect(patch(asAlice, alice, `{"spec":{"active":false}}`)).To(Succeed())
	g.Eventually(func(g Gomega) {
		e := &v1.Entity{}
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(ent), e)).To(Succeed())
		g.Expect(e.Status.Users.Active).To(BeZero())
		g.Expect(e.Status.Licenses.Used).To(BeZero())
	}).WithTimeout(60 * time.Second).Should(Succeed())
	g.Expect(bindingSubjects(g, admins)).To(Equal([]string{alice.Spec.Email}))
	g.Expect(asAlice.Create(ctx(), newUser(ns, "hired-while-inactive", false))).To(Succeed())

	// Promotion grants, demotion withdraws.
	dave := newUser(ns, "dave", false)
	g.Expect(k8s.Create(ctx(), dave)).To(Succeed())
	g.Expect(allowed(g, dave.Spec.Email, manageUsers)).To(BeFalse())
	g.Expect(patch(asAlice, dave, `{"spec":{"role":"Administrator"}}`)).To(Succeed())
	eventuallyAllowed(g, dave.Spec.Email, manageUsers, true)
	g.Expect(bindingSubjects(g, admins)).To(Equal([]string{alice.Spec.Email, dave.Spec.Email}))
	g.Expect(patch(asAlice, dave, `{"spec":{"role":"User"}}`)).To(Succeed())
	eventuallyAllowed(g, dave.Spec.Email, manageUsers, false)
	eventuallyAllowed(g, dave.Spec.Email, readEntity, false)

	// A new email moves the rights to the new address.
	oldEmail := alice.Spec.Email
	g.Expect(patch(k8s, alice, `{"spec":{"email":"alice.new@`+ns+`.example"}}`)).To(Succeed())
	eventuallyAllowed(g, alice.Spec.Email, manageUsers, true)
	eventuallyAllowed(g, oldEmail, manageUsers, false)

	// A hand edit of a generated binding is undone.
	const mallory = `{"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory@example.org"}]}`
	g.Expect(patch(k8s, admins, mallory)).To(Succeed())
	g.Eventually(func() []string { return bindingSubjects(g, admins) }).WithTimeout(60 * time.Second).
		Should(Equal([]string{alice.Spec.Email}))

	// A deleted administrator loses its rights, on the namespace and the Entity.
	g.Expect(k8s.Delete(ctx(), alice)).To(Succeed())
	eventuallyAllowed(g, alice.Spec.Email, manageUsers, false)
	eventuallyAllowed(g, alice.Spec.Email, readEntity, false)
	g.Expect(bindingSubjects(g, admins)).To(BeEmpty())
	g.Expect(bindingSubjects(g, reader)).To(BeEmpty())

	// Concierges: one ClusterRoleBinding for all of them, and the room PINs in
	// every entity namespace (and there only).
	concierges := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: controller.ConciergesBinding}}
	roomsEverywhere := access{"create", v1.GroupVersion.Group, "vmrs", other, ""}
	otherRoom := room(other, "lobby")
	g.Expect(k8s.Create(ctx(), otherRoom)).To(Succeed())
	pins := access{"get", "", "secrets", other, waitRoomPINs(g, otherRoom)}
	carol := withRole(newUser(ns, "carol", false), v1.RoleConcierge)
	g.Expect(k8s.Create(ctx(), carol)).To(Succeed())
	eventuallyAllowed(g, carol.Spec.Email, roomsEverywhere, true)
	eventuallyAllowed(g, carol.Spec.Email, pins, true)
	g.Expect(allowed(g, carol.Spec.Email, access{"get", "", "secrets", "default", ""})).To(BeFalse())
	g.Expect(allowed(g, carol.Spec.Email, access{"get", "", "secrets", other, "not-a-pin"})).To(BeFalse())
	g.Expect(allowed(g, carol.Spec.Email, access{"list", "", "secrets", other, ""})).To(BeFalse())
	g.Expect(bindingSubjects(g, concierges)).To(ContainElement(carol.Spec.Email))
	g.Expect(concierges.RoleRef.Name).To(Equal(controller.ClusterRoleConcierge))

	g.Expect(patch(k8s, concierges, mallory)).To(Succeed())
	g.Eventually(func() []string { return bindingSubjects(g, concierges) }).WithTimeout(60 * time.Second).
		ShouldNot(ContainElement("mallory@example.org"))
	pinsBinding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: controller.ConciergePINsBinding}}
	g.Expect(bindingSubjects(g, pinsBinding)).To(ContainElement(carol.Spec.Email))
	g.Expect(pinsBinding.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: controller.ConciergePINsRole}))
	g.Expect(patch(k8s, pinsBinding, mallory)).To(Succeed())
	g.Eventually(func() []string { return bindingSubjects(g, pinsBinding) }).WithTimeout(60 * time.Second).
		Should(SatisfyAll(ContainElement(carol.Spec.Email), Not(ContainElement("mallory@example.org"))))

	// A demoted concierge keeps only what its new role gives.
	g.Expect(patch(k8s, carol, `{"spec":{"role":"Administrator"}}`)).To(Succeed())
	eventuallyAllowed(g, carol.Spec.Email, roomsEverywhere, false)
	eventuallyAllowed(g, carol.Spec.Email, pins, false)
	eventuallyAllowed(g, carol.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", ns, ""}, true)

	// A deleted concierge loses everything.
	g.Expect(patch(k8s, carol, `{"spec":{"role":"Concierge"}}`)).To(Succeed())
	eventuallyAllowed(g, carol.Spec.Email, roomsEverywhere, true)
	g.Expect(k8s.Delete(ctx(), carol)).To(Succeed())
	eventuallyAllowed(g, carol.Spec.Email, roomsEverywhere, false)
	eventuallyAllowed(g, carol.Spec.Email, access{"create", v1.GroupVersion.Group, "platformusers", ns, ""}, false)
	g.Expect(bindingSubjects(g, concierges)).NotTo(ContainElement(carol.Spec.Email))
}

// TestRBACUsernamePrefix runs the operator as for an API server whose OIDC
// usernames carry a prefix, with a platform admin group of the identity
// provider bound to the shipped visio-platform-admin role: the generated
// subjects carry the prefix, and admission recognises people through it.
func TestRBACUsernamePrefix(t *testing.T) {
	g := NewWithT(t)
	const prefix, platformGroup = "oidc:", "oidc:visio-platform-admins"
	withManager(t, nil, func(o *operator.Options) {
		o.UsernamePrefix = prefix
		o.PlatformAdminGroups = append(o.PlatformAdminGroups, platformGroup)
		o.PlatformEntity = "prefixed"
	})
	applyPlatformRoles(g)
	platformTeam := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-visio-platform-admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "visio-platform-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: platformGroup}},
	}
	g.Expect(k8s.Create(ctx(), platformTeam)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx(), platformTeam) })
	at := &attempts{t: t, g: g}

	// A member of the platform team declares an entity, its pool and people.
	asPat := impersonate(g, prefix+"pat@platform.example", platformGroup)
	ent := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: "prefixed"}, Spec: v1.EntitySpec{DisplayName: "Prefixed", DeletionProtection: ptr.To(false)}}
	at.expect("platform", "create an Entity", accepted, asPat.Create(ctx(), ent))
	t.Cleanup(func() { _ = k8s.Delete(ctx(), ent) })
	ns := ent.NamespaceName()
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: ns}, &corev1.Namespace{})).To(Succeed())
	}).WithTimeout(60 * time.Second).Should(Succeed())
	at.expect("platform", "create a LicensePool", accepted, asPat.Create(ctx(), &v1.LicensePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v1.DefaultLicensePool}, Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](5)}}))
	alice := withRole(newUser(ns, "alice", true), v1.RoleAdministrator)
	at.expect("platform", "create an Administrator", accepted, asPat.Create(ctx(), alice))
	withPolicyPlatformEntity(t, g, ent.Name, ns)
	carol := withRole(newUser(ns, "carol", false), v1.RoleConcierge)
	at.expect("platform", "create a Concierge (platform admin group)", accepted, asPat.Create(ctx(), carol))

	// The subjects carry the prefix; the bare address is nobody.
	manageUsers := access{"create", v1.GroupVersion.Group, "platformusers", ns, ""}
	eventuallyAllowed(g, prefix+alice.Spec.Email, manageUsers, true)
	g.Expect(bindingSubjects(g, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "visio-entity-administrators"}})).
		To(Equal([]string{prefix + alice.Spec.Email}))
	g.Expect(allowed(g, alice.Spec.Email, manageUsers)).To(BeFalse())
	eventuallyAllowed(g, prefix+carol.Spec.Email, access{"create", v1.GroupVersion.Group, "vmrs", ns, ""}, true)

	asAlice := impersonate(g, prefix+alice.Spec.Email)
	at.expect("admin", "create a User", accepted, asAlice.Create(ctx(), newUser(ns, "dave", false)))
	at.expect("admin", "create a Concierge", deniedByAdmission, asAlice.Create(ctx(), withRole(newUser(ns, "eve", false), v1.RoleConcierge)), "spec.role")
	at.expect("admin", "create a Concierge in another entity", deniedByRBAC,
		asAlice.Create(ctx(), withRole(newUser(platformNamespace(t, g), uniqueName("eve"), false), v1.RoleConcierge)))
	at.expect("admin", "raise its licenses", deniedByRBAC, patch(asAlice, pool(ns), `{"spec":{"licenses":50}}`))
	at.expect("bare", "create a User without the prefix", deniedByRBAC, impersonate(g, alice.Spec.Email).Create(ctx(), newUser(ns, "bare", false)))
	asCarol := impersonate(g, prefix+carol.Spec.Email)
	at.expect("concierge", "create a Concierge", accepted, asCarol.Create(ctx(), withRole(newUser(ns, uniqueName("cora"), false), v1.RoleConcierge)))
	at.expect("concierge", "create a VMR", accepted, asCarol.Create(ctx(), room(ns, "help-desk")))
	at.expect("platform", "raise the licenses", accepted, patch(asPat, pool(ns), `{"spec":{"licenses":50}}`))
	t.Logf("%d attempts: %d allowed, %d denied", at.allowed+at.denied, at.allowed, at.denied)
}
