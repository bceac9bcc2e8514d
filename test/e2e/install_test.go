//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/config/samples"
)

// TestInstall installs the chart with its defaults: two replicas Ready
// (which needs the webhook certificate in place and its CA injected), one of
// them holding the leader lease.
func TestInstall(t *testing.T) {
	g := NewWithT(t)
	start := time.Now()
	run(t, helm, append([]string{"install", release, filepath.Join(root, "charts", "visio-operator"),
		"--namespace", namespace, "--create-namespace", "--wait", "--timeout", "5m"}, imageArgs()...)...)
	t.Logf("helm install --wait took %s", time.Since(start).Round(time.Second))
	waitReady(g, 2)
	g.Eventually(leader).WithTimeout(time.Minute).Should(HavePrefix("visio-operator-"))

	vwc := &admissionv1.ValidatingWebhookConfiguration{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "visio-operator"}, vwc)).To(Succeed())
	for _, w := range vwc.Webhooks {
		g.Expect(w.ClientConfig.CABundle).NotTo(BeEmpty(), "webhook %s has no CA", w.Name)
		g.Expect(*w.FailurePolicy).To(Equal(admissionv1.Fail))
	}
}

// waitReady waits until the Deployment has n Ready replicas and no others.
func waitReady(g Gomega, n int32) {
	g.Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "visio-operator"}, d)).To(Succeed())
		g.Expect(d.Status.ObservedGeneration).To(Equal(d.Generation))
		g.Expect(d.Status.ReadyReplicas).To(Equal(n))
		g.Expect(d.Status.Replicas).To(Equal(n))
		g.Expect(d.Status.UpdatedReplicas).To(Equal(n))
	}).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
}

// leader is the Pod holding the controllers' lease.
func leader() string {
	l := &coordinationv1.Lease{}
	if err := k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "visio-operator.tenancy.visio.dev"}, l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	id, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return id
}

// TestSamplesReachReady applies config/samples, as a platform team would,
// and waits for every object to be Ready.
func TestSamplesReachReady(t *testing.T) {
	g := NewWithT(t)
	objs, err := samples.Objects()
	g.Expect(err).NotTo(HaveOccurred())
	for _, o := range objs {
		g.Eventually(func() error { // the entity namespace appears after the Entity
			return client.IgnoreAlreadyExists(k8s.Create(ctx(), o.DeepCopy()))
		}).WithTimeout(time.Minute).Should(Succeed(), "%s %s", o.GetKind(), o.GetName())
	}
	for _, o := range objs {
		g.Eventually(func(g Gomega) {
			u := o.DeepCopy()
			g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(o), u)).To(Succeed())
			conds, _, _ := unstructuredConditions(u.Object)
			g.Expect(meta.IsStatusConditionTrue(conds, v1.ReadyCondition)).To(BeTrue(), "%s %s: %v", o.GetKind(), o.GetName(), conds)
		}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	}
	// The sub-entities' pools count what their parent's pools delegate.
	delegations := 0
	for _, o := range objs {
		if o.GetKind() != "LicensePool" {
			continue
		}
		sample := &v1.LicensePool{}
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, sample)).To(Succeed())
		for _, d := range sample.Spec.Delegations {
			delegations++
			g.Eventually(func(g Gomega) {
				child := &v1.LicensePool{}
				g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "entity-" + d.Entity, Name: d.PoolName()}, child)).To(Succeed())
				g.Expect(child.Status.DelegatedIn).To(ContainElement(And(
					HaveField("LicensePool", sample.Name), HaveField("Licenses", d.Licenses))), "%s/%s", child.Namespace, child.Name)
			}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		}
	}
	g.Expect(delegations).To(BeNumerically(">", 0), "the samples show a delegation")
}

func unstructuredConditions(obj map[string]any) ([]metav1.Condition, bool, error) {
	status, _ := obj["status"].(map[string]any)
	raw, _ := status["conditions"].([]any)
	var out []metav1.Condition
	for _, r := range raw {
		m, _ := r.(map[string]any)
		c := metav1.Condition{Type: fmt.Sprint(m["type"]), Status: metav1.ConditionStatus(fmt.Sprint(m["status"])), Reason: fmt.Sprint(m["reason"])}
		out = append(out, c)
	}
	return out, len(out) > 0, nil
}

// newEntity creates an Entity with a Deny pool of n licenses and waits for its namespace.
func newEntity(g Gomega, name string, n int32) string {
	ns := "entity-" + name
	g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.EntitySpec{DisplayName: name}}))).To(Succeed())
	g.Eventually(func() error {
		return client.IgnoreAlreadyExists(k8s.Create(ctx(), &v1.LicensePool{
			ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns},
			Spec:       v1.LicensePoolSpec{Licenses: ptr.To(n), Enforcement: v1.EnforcementDeny},
		}))
	}).WithTimeout(time.Minute).Should(Succeed())
	return ns
}

func user(ns, name string) *v1.PlatformUser {
	return &v1.PlatformUser{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       v1.PlatformUserSpec{Email: name + "@e2e.example", GivenName: "E", FamilyName: name, Active: ptr.To(true)},
	}
}

// TestDenyPoolRefusesThroughService: the API server calls the webhook
// through its Service, and a full Deny pool refuses with the documented message.
func TestDenyPoolRefusesThroughService(t *testing.T) {
	g := NewWithT(t)
	ns := newEntity(g, "e2e-deny", 1)
	g.Eventually(func() error { return client.IgnoreAlreadyExists(k8s.Create(ctx(), user(ns, "first"))) }).WithTimeout(time.Minute).Should(Succeed())
	g.Eventually(func(g Gomega) {
		err := k8s.Create(ctx(), user(ns, "second"))
		g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring(`license pool "default" of entity "e2e-deny" is full: 1/1 licenses used; deactivate a user or request more licenses`))
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// TestAdministratorRBAC impersonates the sample entity's Administrator: the
// RBAC the operator generated lets her manage the users of her entity and
// only read the rest, and nothing in another entity.
func TestAdministratorRBAC(t *testing.T) {
	g := NewWithT(t)
	as := impersonate("anne.leguen@rennes.example")
	g.Eventually(func() error {
		return as.Create(ctx(), user("entity-rennes", "rbac-check"), client.DryRunAll)
	}).WithTimeout(time.Minute).Should(Succeed(), "an Administrator creates users of her entity")
	g.Expect(as.List(ctx(), &v1.PlatformUserList{}, client.InNamespace("entity-rennes"))).To(Succeed())
	g.Expect(as.List(ctx(), &v1.LicensePoolList{}, client.InNamespace("entity-rennes"))).To(Succeed(), "she reads her pools")
	pool := &v1.LicensePool{}
	g.Expect(as.Get(ctx(), client.ObjectKey{Namespace: "entity-rennes", Name: "default"}, pool)).To(Succeed())
	pool.Spec.Licenses = ptr.To[int32](1000)
	g.Expect(apierrors.IsForbidden(as.Update(ctx(), pool, client.DryRunAll))).To(BeTrue(), "she cannot raise her own licenses")
	g.Expect(apierrors.IsForbidden(as.Create(ctx(), user("entity-e2e-deny", "intruder"), client.DryRunAll))).To(BeTrue(), "she cannot touch another entity")
	g.Expect(apierrors.IsForbidden(as.List(ctx(), &v1.PlatformUserList{}, client.InNamespace("entity-e2e-deny")))).To(BeTrue())
	g.Expect(apierrors.IsForbidden(as.List(ctx(), &corev1.SecretList{}, client.InNamespace("entity-rennes")))).To(BeTrue(), "she cannot read the room PINs")
	g.Expect(apierrors.IsForbidden(as.Create(ctx(), &v1.VMR{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "entity-rennes"}, Spec: v1.VMRSpec{DisplayName: "x"}}, client.DryRunAll))).To(BeTrue(), "only Concierges create rooms")
}

// TestParentAdministratorDelegates impersonates the samples' community
// Administrator: through the chart's roles and admission policy she moves
// licenses between the community and its commune, and may change nothing
// else of the pool.
func TestParentAdministratorDelegates(t *testing.T) {
	g := NewWithT(t)
	as := impersonate("gwenaelle.riou@quimperle-co.example")
	parent := client.ObjectKey{Namespace: "entity-quimperle-communaute", Name: "default"}
	child := client.ObjectKey{Namespace: "entity-clohars-carnoet", Name: "default"}
	delegate := func(n int) error {
		doc := fmt.Sprintf(`{"spec":{"delegations":[{"entity":"clohars-carnoet","licenses":%d}]}}`, n)
		return as.Patch(ctx(), &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: parent.Namespace, Name: parent.Name}},
			client.RawPatch(types.MergePatchType, []byte(doc)))
	}
	delegatedIn := func(n int32) {
		g.Eventually(func(g Gomega) {
			p := &v1.LicensePool{}
			g.Expect(k8s.Get(ctx(), child, p)).To(Succeed())
			g.Expect(p.Status.DelegatedIn).To(ContainElement(HaveField("Licenses", n)))
		}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
	}
	g.Eventually(func() error { return delegate(4) }).WithTimeout(time.Minute).Should(Succeed(), "the delegators' binding may take a moment")
	delegatedIn(4)
	g.Expect(delegate(3)).To(Succeed())
	delegatedIn(3)
	err := as.Patch(ctx(), &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: parent.Namespace, Name: parent.Name}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"licenses":100}}`)))
	g.Expect(err).To(MatchError(ContainSubstring("spec.licenses: entity administrators may change only spec.delegations of a license pool")))
	g.Expect(err).To(MatchError(ContainSubstring("ValidatingAdmissionPolicy")))
	commune := impersonate("erwan.lefloch@clohars-carnoet.example")
	g.Expect(apierrors.IsForbidden(commune.Patch(ctx(), &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: child.Namespace, Name: child.Name}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"licenses":100}}`))))).To(BeTrue(), "the commune's administrator changes no pool")
}

func impersonate(name string) client.Client {
	c := *cfg
	c.Impersonate.UserName = name
	cl, err := client.New(&c, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	return cl
}

// TestLeaderKilledDuringBurst: 200 activations into a Deny pool of 50 while
// the leader Pod is killed. Clients retry what the API server could not
// admit for want of a webhook (as kubectl users and GitOps tools do); exactly
// 50 users are admitted, the other replica takes the lease, and the pool is
// never over-licensed.
func TestLeaderKilledDuringBurst(t *testing.T) {
	g := NewWithT(t)
	ns := newEntity(g, "e2e-burst", 50)
	// The pool must be known (Ready) before the burst.
	g.Eventually(func(g Gomega) {
		p := &v1.LicensePool{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "default"}, p)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(p.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
	}).WithTimeout(time.Minute).Should(Succeed())
	old := leader()
	g.Expect(old).NotTo(BeEmpty())

	var admitted, refused, retried atomic.Int64
	var wg sync.WaitGroup
	startKill := make(chan struct{})
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 20 {
				close(startKill)
			}
			for attempt := 0; ; attempt++ {
				err := k8s.Create(ctx(), user(ns, fmt.Sprintf("u%03d", i)))
				switch {
				case err == nil:
					admitted.Add(1)
					return
				case apierrors.IsAlreadyExists(err): // an earlier attempt landed
					admitted.Add(1)
					return
				case strings.Contains(err.Error(), "is full"):
					refused.Add(1)
					return
				case attempt < 60:
					retried.Add(1)
					time.Sleep(500 * time.Millisecond)
				default:
					t.Errorf("user %d: %v", i, err)
					return
				}
			}
		}()
	}
	<-startKill
	kubectl(t, "delete", "pod", "-n", namespace, old, "--grace-period=0", "--force", "--wait=false")
	wg.Wait()
	t.Logf("admitted %d, refused %d, retried requests %d", admitted.Load(), refused.Load(), retried.Load())
	g.Expect(admitted.Load()).To(BeEquivalentTo(50))
	g.Expect(refused.Load()).To(BeEquivalentTo(150))

	g.Eventually(leader).WithTimeout(2*time.Minute).ShouldNot(Or(BeEmpty(), Equal(old)), "the other replica takes the lease")
	g.Eventually(func(g Gomega) {
		users := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), users, client.InNamespace(ns))).To(Succeed())
		g.Expect(users.Items).To(HaveLen(50))
		licensed := 0
		for _, u := range users.Items {
			if meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition) {
				licensed++
			}
		}
		g.Expect(licensed).To(Equal(50))
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	waitReady(g, 2) // the Deployment replaced the killed Pod
}
