//go:build gitops

package gitops

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// The Kustomizations of the repository, in the order of their dependsOn.
var layers = []string{"visio-operator", "visio-entities", "visio-pools", "visio-users-rennes", "visio-users-brest"}

// TestGitOps drives the platform repository through the life DESIGN.md's
// "GitOps, proven with a real Flux" describes, one commit at a time, and
// reads back what Flux says at each step.
func TestGitOps(t *testing.T) {
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"FirstSyncReadyOnlyOnceEveryObjectIsReady", firstSync},
		{"NoDriftAfterFirstSync", noDrift},
		{"FullQueuePoolFailsTheHealthCheckUntilLicensesAreRaisedInGit", fullQueuePool},
		{"UserRemovedFromGitIsPrunedAndItsLicenseFreed", userPruned},
		{"ProtectedEntityRemovedFromGitStaysAndSaysWhy", protectedEntity},
		{"ProtectedEntityRemovedForReal", entityRemovedForReal},
		{"NoDriftAtTheEnd", noDrift},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.Fatalf("step %s failed: the next steps build on it", s.name)
		}
	}
}

var revision string // the last revision committed

// firstSync bootstraps Flux on the repository and checks that each layer
// becomes Ready after the one it depends on, only once Flux's health checks
// have run and every object it applied is Ready.
func firstSync(t *testing.T) {
	g := NewWithT(t)
	firsts := watchFirstReady(t)
	bootstrap(g)
	startManagerWhenInstalled(t, g)
	var err error
	revision, err = headRevision()
	g.Expect(err).NotTo(HaveOccurred())
	ready := waitReady(g, revision, 4*time.Minute, append([]string{"platform"}, layers...)...)

	seen := firsts.stop()
	for i, name := range layers {
		first, ok := seen[name]
		g.Expect(ok).To(BeTrue(), "the watch saw %s Ready", name)
		g.Expect(first.notCurrent).To(BeEmpty(), "%s turned Ready while objects were not", name)
		g.Expect(first.history).To(ContainElement(ContainSubstring("Running health checks")),
			"%s ran its health checks before turning Ready", name)
		t.Logf("%s: Ready after %d status updates, the one before: %s", name, len(first.history)-1, first.history[max(0, len(first.history)-2)])
		if i > 0 {
			dep := layers[min(i-1, 2)] // both users layers depend on visio-pools
			g.Expect(first.seq).To(BeNumerically(">", seen[dep].seq), "%s Ready before %s, which it depends on", name, dep)
		}
		// No object turned Ready after its Kustomization did.
		k := ready[name]
		kReady := k.condition("Ready").LastTransitionTime
		for _, u := range inventoryObjects(g, k) {
			g.Expect(kstatusOf(g, u)).To(Equal(status.CurrentStatus), "%s %s", u.GetKind(), u.GetName())
			if since, ok := readySince(g, u); ok {
				g.Expect(since.After(kReady.Time)).To(BeFalse(),
					"%s %s/%s Ready at %v, after %s at %v", u.GetKind(), u.GetNamespace(), u.GetName(), since, name, kReady)
			}
		}
	}
	// What the layers hold.
	g.Expect(ready["visio-entities"].inventory()).To(Equal([]string{"_brest_tenancy.visio.dev_Entity", "_rennes_tenancy.visio.dev_Entity"}))
	g.Expect(ready["visio-users-rennes"].inventory()).To(Equal([]string{
		"entity-rennes_anne-leguen_tenancy.visio.dev_PlatformUser", "entity-rennes_conseil-municipal_tenancy.visio.dev_VMR",
		"entity-rennes_yann-morvan_tenancy.visio.dev_PlatformUser"}))
	g.Expect(repo.fetches.Load()).To(BeNumerically(">", 0), "source-controller cloned from the local git server")
}

// startManagerWhenInstalled starts the manager once the repository's first
// layer has installed what it needs (its CRDs, its RBAC, its namespace), as
// the chart's Deployment would start once applied. Until then the first
// layer's health check (the manager's leader Lease) keeps every later layer
// waiting.
func startManagerWhenInstalled(t *testing.T, g Gomega) {
	g.Eventually(func(g Gomega) {
		noProcessExited(g)
		for _, name := range []string{"dialstringclaims", "entities", "licensepools", "licenserequests", "platformusers", "vmrs"} {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name + ".tenancy.visio.dev"}, crd)).To(Succeed())
			g.Expect(crdEstablished(crd)).To(BeTrue(), crd.Name)
		}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "visio-operator-manager"}, &rbacv1.ClusterRoleBinding{})).To(Succeed())
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "visio-system", Name: "visio-operator-leader-election"}, &rbacv1.Role{})).To(Succeed())
		k := getKustomization(g, "visio-entities")
		g.Expect(k.Status.LastAppliedRevision).To(BeEmpty(), "entities applied before the operator runs")
	}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	g.Expect(startManager()).To(Succeed())
	t.Log("the operator's layer is applied: manager started")
}

func crdEstablished(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// fullQueuePool adds a user to the full Queue pool of rennes: the user is
// admitted and waits, so the users' Kustomization fails its health check and
// names that user. Raising the pool's licenses in git, and nothing else,
// brings it back to Ready.
func fullQueuePool(t *testing.T) {
	g := NewWithT(t)
	g.Expect(repo.write("users/rennes/carole-guillou.yaml", userYAML("rennes", "carole-guillou", "Carole", "Guillou"))).To(Succeed())
	rev := commit(g, "rennes: Carole Guillou joins")

	var before *kustomization
	g.Eventually(func(g Gomega) {
		noProcessExited(g)
		k := getKustomization(g, "visio-users-rennes")
		g.Expect(k.Status.LastAttemptedRevision).To(Equal(rev))
		ready := k.condition("Ready")
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(BeEquivalentTo("False"), k.conditionsText())
		g.Expect(ready.Reason).To(Equal("HealthCheckFailed"), k.conditionsText())
		before = k
	}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	msg := before.condition("Ready").Message
	g.Expect(msg).To(ContainSubstring("PlatformUser/entity-rennes/carole-guillou"), "the health check names the waiting user")
	g.Expect(msg).NotTo(ContainSubstring("anne-leguen"))
	g.Expect(msg).NotTo(ContainSubstring("yann-morvan"))
	// Applied (Flux records lastAppliedRevision only once healthy): only its health fails.
	g.Expect(before.Status.LastAppliedRevision).NotTo(Equal(rev))
	t.Logf("visio-users-rennes with %s waiting for a license (%s):\n%s", "carole-guillou", rev, before.conditionsText())
	u := getUser(g, "entity-rennes", "carole-guillou")
	stalled := meta.FindStatusCondition(u.Status.Conditions, v1.StalledCondition)
	g.Expect(stalled).NotTo(BeNil())
	g.Expect(stalled.Reason).To(Equal(v1.ReasonLicensePoolExhausted))
	g.Eventually(func(g Gomega) {
		g.Expect(eventsOf(g, "visio-users-rennes")).To(ContainElement(And(
			HaveField("Type", corev1.EventTypeWarning), HaveField("Reason", "HealthCheckFailed"),
			HaveField("Message", ContainSubstring("PlatformUser/entity-rennes/carole-guillou")))))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	// The other layers are unaffected.
	waitReady(g, rev, time.Minute, "visio-pools", "visio-users-brest")

	pool, err := repo.read("pools/rennes.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pool).To(ContainSubstring("licenses: 2\n"))
	g.Expect(repo.write("pools/rennes.yaml", strings.Replace(pool, "licenses: 2\n", "licenses: 3\n", 1))).To(Succeed())
	rev = commit(g, "rennes: a third license")
	after := waitReady(g, rev, 2*time.Minute, "visio-pools", "visio-users-rennes")["visio-users-rennes"]
	t.Logf("visio-users-rennes once the pool has 3 licenses in git (%s):\n%s", rev, after.conditionsText())
	g.Expect(meta.IsStatusConditionTrue(getUser(g, "entity-rennes", "carole-guillou").Status.Conditions, v1.LicensedCondition)).To(BeTrue())
	revision = rev
}

// userPruned removes a licensed user of the full Deny pool of brest from git:
// Flux deletes it in the reconcile of that commit and the pool has a free
// license again.
func userPruned(t *testing.T) {
	g := NewWithT(t)
	pool := getPool(g, "entity-brest", "default")
	g.Expect(pool.Status.Used).To(BeEquivalentTo(2))
	g.Expect(pool.Status.Available).To(BeEquivalentTo(0))

	g.Expect(repo.remove("users/brest/erwan-kerbrat.yaml")).To(Succeed())
	rev := commit(g, "brest: Erwan Kerbrat leaves")
	k := waitReady(g, rev, 2*time.Minute, "visio-users-brest")["visio-users-brest"]
	g.Expect(k.inventory()).To(Equal([]string{"entity-brest_gwen-tanguy_tenancy.visio.dev_PlatformUser"}))
	err := k8s.Get(ctx(), client.ObjectKey{Namespace: "entity-brest", Name: "erwan-kerbrat"}, &v1.PlatformUser{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "pruned by the time Flux is Ready: %v", err)
	g.Eventually(func(g Gomega) {
		pool := getPool(g, "entity-brest", "default")
		g.Expect(pool.Status.ObservedGeneration).To(Equal(pool.Generation))
		g.Expect(pool.Status.Used).To(BeEquivalentTo(1))
		g.Expect(pool.Status.Available).To(BeEquivalentTo(1))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	// One reconcile of that revision pruned it: one garbage-collection event.
	g.Eventually(func(g Gomega) {
		all := eventsOf(g, "visio-users-brest")
		g.Expect(eventsWith(all, rev, "PlatformUser/entity-brest/erwan-kerbrat deleted")).To(HaveLen(1), "events: %v", all)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	revision = rev
}

// protectedEntity removes rennes, protected and with users and a room, from
// git: Flux's prune is refused, and Flux says why; nothing is deleted.
func protectedEntity(t *testing.T) {
	g := NewWithT(t)
	g.Expect(repo.remove("entities/rennes.yaml")).To(Succeed())
	rev := commit(g, "rennes leaves the platform")
	var k *kustomization
	g.Eventually(func(g Gomega) {
		noProcessExited(g)
		k = getKustomization(g, "visio-entities")
		g.Expect(k.Status.LastAttemptedRevision).To(Equal(rev))
		ready := k.condition("Ready")
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(BeEquivalentTo("False"), k.conditionsText())
		g.Expect(ready.Reason).To(Equal("PruneFailed"), k.conditionsText())
		g.Expect(ready.Message).To(ContainSubstring(`entity "rennes" is protected from deletion and still has 3 PlatformUsers and 1 VMR`), k.conditionsText())
	}).WithTimeout(2 * time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
	t.Logf("visio-entities with rennes removed from git (%s):\n%s", rev, k.conditionsText())
	// Flux keeps it in its inventory, to prune it again at the next reconcile.
	g.Expect(k.inventory()).To(ContainElement("_rennes_tenancy.visio.dev_Entity"))
	g.Expect(k.condition("Ready").Message).To(ContainSubstring(v1.ReasonDeletionProtected))

	e := &v1.Entity{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "rennes"}, e)).To(Succeed())
	g.Expect(e.DeletionTimestamp).To(BeNil())
	g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	ns := &corev1.Namespace{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "entity-rennes"}, ns)).To(Succeed())
	g.Expect(ns.Status.Phase).To(Equal(corev1.NamespaceActive))
	users := &v1.PlatformUserList{}
	g.Expect(k8s.List(ctx(), users, client.InNamespace("entity-rennes"))).To(Succeed())
	g.Expect(users.Items).To(HaveLen(3))
	vmr := &v1.VMR{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "entity-rennes", Name: "conseil-municipal"}, vmr)).To(Succeed())
	g.Expect(meta.IsStatusConditionTrue(vmr.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	// The layers that depend on the entities wait, their objects as they were:
	// Flux applies nothing on top of a layer it could not reconcile.
	g.Eventually(func(g Gomega) {
		k := getKustomization(g, "visio-users-rennes")
		g.Expect(k.condition("Ready").Reason).To(Equal("DependencyNotReady"), k.conditionsText())
		g.Expect(k.Status.LastAppliedRevision).To(Equal(revision))
		g.Expect(k.inventory()).To(HaveLen(4))
	}).WithTimeout(time.Minute).Should(Succeed())
}

// entityRemovedForReal removes rennes as docs/gitops.md says: one commit that
// turns its deletion protection off, then one that removes it with its pool,
// its users and their Kustomization.
func entityRemovedForReal(t *testing.T) {
	g := NewWithT(t)
	g.Expect(repo.write("entities/rennes.yaml", `# Leaving the platform: protection off, then removed in the next commit.
apiVersion: tenancy.visio.dev/v1alpha1
kind: Entity
metadata:
  name: rennes
spec:
  displayName: Ville de Rennes
  contact:
    email: dsi@rennes.example
  deletionProtection: false
`)).To(Succeed())
	rev := commit(g, "rennes: deletion protection off")
	waitReady(g, rev, 2*time.Minute, "visio-entities")

	for _, path := range []string{"entities/rennes.yaml", "pools/rennes.yaml", "users/rennes", "clusters/local/visio-users-rennes.yaml"} {
		g.Expect(repo.remove(path)).To(Succeed())
	}
	rev = commit(g, "rennes leaves the platform")
	layers = []string{"visio-operator", "visio-entities", "visio-pools", "visio-users-brest"}
	waitReady(g, rev, 2*time.Minute, append([]string{"platform"}, layers...)...)
	g.Eventually(func(g Gomega) {
		for _, obj := range []client.Object{&v1.Entity{}, &corev1.Namespace{}} {
			name := "rennes"
			if _, isNS := obj.(*corev1.Namespace); isNS {
				name = "entity-rennes"
			}
			err := k8s.Get(ctx(), client.ObjectKey{Name: name}, obj)
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s: %v", obj, name, err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(kustomizationGVK)
		err := k8s.Get(ctx(), client.ObjectKey{Namespace: fluxNamespace, Name: "visio-users-rennes"}, u)
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Kustomization visio-users-rennes: %v", err)
	}).WithTimeout(2 * time.Minute).Should(Succeed())
	revision = rev
}

// noDrift reconciles every Kustomization again: nothing the operator wrote
// (status, defaults, its own fields) makes Flux apply anything.
func noDrift(t *testing.T) {
	g := NewWithT(t)
	for _, name := range append([]string{"platform"}, layers...) {
		before := getKustomization(g, name)
		g.Expect(before.readyAt(revision)).To(BeTrue(), "%s:\n%s", name, before.conditionsText())
		objs := inventoryObjects(g, before)
		generations := map[string]int64{}
		for _, u := range objs {
			generations[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = u.GetGeneration()
		}
		seen := len(eventsOf(g, name))

		token := requestReconcile(g, name)
		var after *kustomization
		g.Eventually(func(g Gomega) {
			noProcessExited(g)
			after = getKustomization(g, name)
			g.Expect(after.Status.LastHandledReconcileAt).To(Equal(token))
			g.Expect(after.readyAt(revision)).To(BeTrue(), after.conditionsText())
		}).WithTimeout(time.Minute).WithPolling(250 * time.Millisecond).Should(Succeed())
		g.Expect(after.inventory()).To(Equal(before.inventory()), name)
		for _, u := range inventoryObjects(g, after) {
			key := u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
			g.Expect(u.GetGeneration()).To(Equal(generations[key]), "%s: %s changed", name, key)
		}
		// kustomize-controller records the objects it changed in an event
		// of their own, before "Reconciliation finished": there is none.
		var fresh []fluxEvent
		g.Eventually(func(g Gomega) {
			fresh = eventsOf(g, name)[seen:]
			g.Expect(fresh).To(ContainElement(And(HaveField("Reason", "ReconciliationSucceeded"),
				HaveField("Message", HavePrefix("Reconciliation finished")))))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		for _, e := range fresh {
			g.Expect(e.Message).To(HavePrefix("Reconciliation finished"), "%s applied something: %s", name, e)
		}
		t.Logf("%s: second sync of %s applied nothing (%d objects): %v", name, revision, len(objs), fresh)
	}
}

func commit(g Gomega, message string) string {
	rev, err := repo.commit(message)
	g.Expect(err).NotTo(HaveOccurred())
	return rev
}

func headRevision() (string, error) {
	sha, err := repo.git(repo.checkout, "rev-parse", "HEAD")
	return "main@sha1:" + strings.TrimSpace(sha), err
}

func userYAML(entity, name, given, family string) string {
	return fmt.Sprintf(`apiVersion: tenancy.visio.dev/v1alpha1
kind: PlatformUser
metadata:
  name: %s
  namespace: entity-%s
spec:
  email: %s@%s.example
  givenName: %s
  familyName: %s
`, name, entity, name, entity, given, family)
}

func getUser(g Gomega, ns, name string) *v1.PlatformUser {
	u := &v1.PlatformUser{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
	return u
}

func getPool(g Gomega, ns, name string) *v1.LicensePool {
	p := &v1.LicensePool{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
	return p
}

// readySince is when an object's Ready condition last changed, if it has one.
func readySince(g Gomega, u *unstructured.Unstructured) (time.Time, bool) {
	conds, _, err := unstructured.NestedSlice(u.Object, "status", "conditions")
	g.Expect(err).NotTo(HaveOccurred())
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Ready" {
			ltt, _ := m["lastTransitionTime"].(string)
			t, err := time.Parse(time.RFC3339, ltt)
			g.Expect(err).NotTo(HaveOccurred())
			return t, true
		}
	}
	return time.Time{}, false
}

// eventsWith keeps the events of revision whose message has text.
func eventsWith(events []fluxEvent, revision, text string) []fluxEvent {
	var out []fluxEvent
	for _, e := range events {
		if e.Revision == revision && strings.Contains(e.Message, text) {
			out = append(out, e)
		}
	}
	return out
}

// firstReady is what the watch saw when a Kustomization first turned Ready.
type firstReady struct {
	seq        int      // its place among the first-Ready transitions
	history    []string // its Ready conditions until then
	notCurrent []string // objects of its inventory not Ready (kstatus) at that moment
}

type readyWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	seen   map[string]*firstReady
}

// watchFirstReady watches the Kustomizations and, the moment each first turns
// Ready, records what its inventory's objects were.
func watchFirstReady(t *testing.T) *readyWatch {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(kustomizationGVK.GroupVersion().WithKind("KustomizationList"))
	c, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(c, list, client.InNamespace(fluxNamespace))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rw := &readyWatch{cancel: cancel, done: make(chan struct{}), seen: map[string]*firstReady{}}
	histories := map[string][]string{}
	go func() {
		defer close(rw.done)
		defer w.Stop()
		seq := 0
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			g := NewGomega(func(message string, _ ...int) { t.Errorf("watch: %s", message) })
			k := decodeKustomization(g, u)
			ready := k.condition("Ready")
			if ready == nil {
				continue
			}
			h := fmt.Sprintf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
			if r := k.condition("Reconciling"); r != nil {
				h += fmt.Sprintf(" / Reconciling=%s %s: %s", r.Status, r.Reason, r.Message)
			}
			if n := len(histories[k.Name]); n == 0 || histories[k.Name][n-1] != h {
				histories[k.Name] = append(histories[k.Name], h)
			}
			rw.mu.Lock()
			_, done := rw.seen[k.Name]
			rw.mu.Unlock()
			if done || ready.Status != "True" || k.Status.Inventory == nil {
				continue
			}
			seq++
			first := &firstReady{seq: seq, history: histories[k.Name]}
			for _, obj := range inventoryObjects(g, k) {
				if s := kstatusOf(g, obj); s != status.CurrentStatus {
					first.notCurrent = append(first.notCurrent, fmt.Sprintf("%s %s/%s: %s", obj.GetKind(), obj.GetNamespace(), obj.GetName(), s))
				}
			}
			rw.mu.Lock()
			rw.seen[k.Name] = first
			rw.mu.Unlock()
		}
	}()
	t.Cleanup(rw.stopQuietly)
	return rw
}

func (rw *readyWatch) stop() map[string]*firstReady {
	rw.stopQuietly()
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.seen
}

func (rw *readyWatch) stopQuietly() {
	rw.cancel()
	<-rw.done
}
