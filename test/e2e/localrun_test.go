//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// nodeIP is the node's address, on the loopback of the namespace the tests
// run in: the API server and the Pods reach a server of the test process there.
const nodeIP = "10.200.0.1"

// localWebhooks is the webhook configuration make run registers when it
// serves the webhooks itself (hack/localrun).
const localWebhooks = "visio-operator-make-run"

// localRun is make run's program (hack/localrun, built by hack/e2e/e2e.sh)
// running against the node, with the image's manager binary.
type localRun struct {
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLocalRun runs make run's program from the repository's root (it
// reads config/) with KUBECONFIG set, as a developer would, plus env. It is
// stopped at the end of the test if it still runs, and its output is logged
// when the test failed.
func startLocalRun(t *testing.T, env ...string) *localRun {
	t.Helper()
	r := &localRun{done: make(chan struct{})}
	r.cmd = exec.Command(os.Getenv("E2E_LOCALRUN"), "-manager", os.Getenv("E2E_MANAGER"), "--")
	r.cmd.Dir = root
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "WEBHOOK_HOST=") {
			r.cmd.Env = append(r.cmd.Env, e)
		}
	}
	r.cmd.Env = append(r.cmd.Env, env...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("make run: %v", err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("make run's output:\n%s", r.out.String())
		}
	})
	return r
}

// stop signals the program, as Ctrl-C or a service manager would, and
// waits for it to exit; nil when it exited with status 0.
func (r *localRun) stop(sig os.Signal) error {
	select {
	case <-r.done:
		return r.err
	default:
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
		return r.err
	case <-time.After(45 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		return errors.New("make run did not stop within 45s of " + sig.String())
	}
}

// reconciles is the number of reconciles the local manager has run, from
// its metrics (make run serves them on 127.0.0.1:8080, in plain HTTP).
func reconciles(g Gomega) float64 {
	resp, err := http.Get("http://127.0.0.1:8080/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var n float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "controller_runtime_reconcile_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		g.Expect(err).NotTo(HaveOccurred(), line)
		n += v
	}
	return n
}

// unprotectedEntity creates an Entity that may be deleted (deletion
// protection off) and waits until it is Ready.
func unprotectedEntity(g Gomega, name string) *v1.Entity {
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.EntitySpec{DisplayName: name, DeletionProtection: ptr.To(false)}}
	g.Eventually(func() error { // the CRD may be new to this client (make run created it)
		return client.IgnoreAlreadyExists(k8s.Create(ctx(), e))
	}).WithTimeout(time.Minute).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "%v", e.Status.Conditions)
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	return e
}

// deleteEntity deletes an Entity and waits until it and its namespace are
// gone (an operator must run: it holds the finalizers).
func deleteEntity(g Gomega, e *v1.Entity) {
	g.Expect(client.IgnoreNotFound(k8s.Delete(ctx(), e))).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(e), &v1.Entity{})) &&
			apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: e.NamespaceName()}, &corev1.Namespace{}))
	}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(BeTrue(), "Entity %s and its namespace deleted", e.Name)
}

// crdMarks are the ownership marks Helm reads on the CRDs, by CRD: a chart
// uninstalled with crds.keep adopts them again on install only if they are
// still there.
func crdMarks(g Gomega) map[string]string {
	list := &apiextensionsv1.CustomResourceDefinitionList{}
	g.Expect(k8s.List(ctx(), list)).To(Succeed())
	marks := map[string]string{}
	for _, c := range list.Items {
		if c.Spec.Group == v1.GroupVersion.Group {
			marks[c.Name] = c.Labels["app.kubernetes.io/managed-by"] + " " + c.Annotations["meta.helm.sh/release-name"] + " " + c.Annotations["meta.helm.sh/release-namespace"]
		}
	}
	return marks
}

// chartLeader waits until a replica of this installation leads, and names
// it: after a reinstall, the lease may still name a Pod of the previous one
// until it expires (helm uninstall deletes the Role that would let a
// stopping Pod release it).
func chartLeader(g Gomega) string {
	var name string
	g.Eventually(func(g Gomega) {
		name = leader()
		pod := &corev1.Pod{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: name}, pod)).To(Succeed())
		g.Expect(pod.DeletionTimestamp).To(BeNil())
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
	return name
}

// TestMakeRunWithoutWebhooks: make run against a cluster where the chart is
// not installed and the API server is not told where to reach the local
// webhooks: it says so, runs the controllers alone, leaves the admission
// configuration alone, and the CRDs it updates keep the marks by which a
// later helm install adopts them (or, when it created them, says that helm
// install needs --take-ownership).
func TestMakeRunWithoutWebhooks(t *testing.T) {
	g := NewWithT(t)
	withoutChart(t)
	marks := crdMarks(g)
	r := startLocalRun(t)
	g.Eventually(r.out.String).WithTimeout(time.Minute).Should(ContainSubstring("Running the controllers here WITHOUT admission webhooks"))

	e := unprotectedEntity(g, "e2e-run-plain")
	g.Expect(reconciles(g)).To(BeNumerically(">", 0), "the local manager reconciled")
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: localWebhooks}, &admissionv1.ValidatingWebhookConfiguration{}))).To(BeTrue())
	after := crdMarks(g)
	for crd, m := range marks {
		g.Expect(after).To(HaveKeyWithValue(crd, m), "the CRDs keep Helm's ownership marks")
	}
	if len(marks) < len(after) { // make run created CRDs: helm install needs --take-ownership (helmUpgrade passes it)
		g.Expect(r.out.String()).To(ContainSubstring("pass --take-ownership to helm install"))
	}

	deleteEntity(g, e)
	g.Expect(r.stop(syscall.SIGINT)).To(Succeed(), "make run exits cleanly on Ctrl-C")
}

// TestMakeRunServesWebhooks: with WEBHOOK_HOST set to an address the API
// server reaches, make run serves the admission webhooks from this machine
// under a webhook configuration of its own: a full Deny pool refuses at
// admission, and the configuration is removed when make run stops.
func TestMakeRunServesWebhooks(t *testing.T) {
	g := NewWithT(t)
	withoutChart(t)
	r := startLocalRun(t, "WEBHOOK_HOST="+nodeIP)
	t.Cleanup(func() { // should make run fail to remove it, the next tests would fail closed
		_ = client.IgnoreNotFound(k8s.Delete(ctx(), &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: localWebhooks}}))
	})
	g.Eventually(r.out.String).WithTimeout(time.Minute).Should(ContainSubstring("Serving the admission webhooks from this machine at https://" + nodeIP + ":9443"))
	vwc := &admissionv1.ValidatingWebhookConfiguration{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: localWebhooks}, vwc)).To(Succeed())
	g.Expect(vwc.Webhooks).NotTo(BeEmpty())
	for _, w := range vwc.Webhooks {
		g.Expect(w.ClientConfig.URL).To(HaveValue(HavePrefix("https://"+nodeIP+":9443/")), w.Name)
	}

	e := unprotectedEntity(g, "e2e-run-hooks")
	ns := e.NamespaceName()
	g.Eventually(func() error {
		return client.IgnoreAlreadyExists(k8s.Create(ctx(), &v1.LicensePool{
			ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns},
			Spec:       v1.LicensePoolSpec{Licenses: ptr.To[int32](1), Enforcement: v1.EnforcementDeny},
		}))
	}).WithTimeout(time.Minute).Should(Succeed())
	g.Eventually(func() error { return client.IgnoreAlreadyExists(k8s.Create(ctx(), user(ns, "first"))) }).WithTimeout(time.Minute).Should(Succeed())
	g.Eventually(func(g Gomega) {
		err := k8s.Create(ctx(), user(ns, "second"))
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring(`admission webhook "vplatformuser.tenancy.visio.dev" denied the request`))
		g.Expect(err.Error()).To(ContainSubstring(`license pool "default" of entity "e2e-run-hooks" is full: 1/1 licenses used`))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	deleteEntity(g, e)
	g.Expect(r.stop(syscall.SIGTERM)).To(Succeed(), "make run exits cleanly on SIGTERM")
	g.Expect(r.out.String()).To(ContainSubstring("removed when this stops"))
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: localWebhooks}, &admissionv1.ValidatingWebhookConfiguration{}))).
		To(BeTrue(), "make run removed its webhook configuration on exit")
}

// TestMakeRunBehindChart: with the chart installed, make run runs the
// controllers only, behind the chart's leader lease: while a chart replica
// leads, the local manager reconciles nothing; scaled to zero, the chart
// hands the lease over and the local manager reconciles.
func TestMakeRunBehindChart(t *testing.T) {
	g := NewWithT(t)
	withChart(t)
	holder := chartLeader(g)
	r := startLocalRun(t, "WEBHOOK_HOST="+nodeIP) // the chart takes precedence over WEBHOOK_HOST
	var before *v1.Entity
	t.Cleanup(func() { // before withChart's cleanup: the chart's webhooks admit the deletions
		g := NewWithT(t)
		_ = r.stop(syscall.SIGINT)
		kubectl(t, "scale", "deployment/visio-operator", "-n", namespace, "--replicas=2")
		waitReady(g, 2)
		if before != nil {
			deleteEntity(g, before)
		}
	})
	g.Eventually(r.out.String).WithTimeout(time.Minute).Should(ContainSubstring("The chart is installed in namespace " + namespace))
	lock := `"lock":"` + namespace + `/visio-operator.tenancy.visio.dev"`
	g.Eventually(r.out.String).WithTimeout(time.Minute).Should(MatchRegexp(`Attempting to acquire leader lease.*` + lock))

	before = unprotectedEntity(g, "e2e-run-behind") // reconciled by the chart's leader
	g.Consistently(func(g Gomega) {
		g.Expect(reconciles(g)).To(BeZero(), "the local manager reconciled beside the chart's leader")
		g.Expect(leader()).To(Equal(holder))
	}).WithTimeout(10 * time.Second).WithPolling(time.Second).Should(Succeed())
	g.Expect(r.out.String()).NotTo(ContainSubstring("Successfully acquired lease"))
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Name: localWebhooks}, &admissionv1.ValidatingWebhookConfiguration{}))).To(BeTrue())

	// The chart scaled to zero releases the lease; the local manager takes it.
	kubectl(t, "scale", "deployment/visio-operator", "-n", namespace, "--replicas=0")
	waitReady(g, 0)
	g.Eventually(r.out.String).WithTimeout(time.Minute).Should(MatchRegexp(`Successfully acquired lease.*` + lock))
	g.Expect(leader()).NotTo(HavePrefix("visio-operator-"))
	// The chart's webhooks have no endpoint now, and an Entity's creation
	// goes through them (the one-level rule of sub-entities); its update
	// does not. A new generation of the Entity is reconciled by the local
	// manager.
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(before), before)).To(Succeed())
	before.Spec.DisplayName = "e2e-run-behind, renamed"
	g.Expect(k8s.Update(ctx(), before)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(before), before)).To(Succeed())
		c := meta.FindStatusCondition(before.Status.Conditions, v1.ReadyCondition)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.ObservedGeneration).To(Equal(before.Generation), "the new generation reconciled")
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
	g.Expect(reconciles(g)).To(BeNumerically(">", 0), "the local manager reconciles once it leads")
}

// TestMakeRunBehindChartWithoutWebhooks: the chart installed with its
// webhooks off is found all the same (by its Deployment), and make run
// waits for its leader lease rather than run the controllers beside it.
func TestMakeRunBehindChartWithoutWebhooks(t *testing.T) {
	g := NewWithT(t)
	withChart(t, "webhook.enabled=false")
	chartLeader(g)
	r := startLocalRun(t)
	g.Eventually(r.out.String).WithTimeout(time.Minute).Should(ContainSubstring("The chart is installed in namespace " + namespace + ", with its admission webhooks off"))
	g.Eventually(r.out.String).WithTimeout(time.Minute).Should(MatchRegexp(`Attempting to acquire leader lease.*"lock":"` + namespace + `/visio-operator.tenancy.visio.dev"`))
	g.Expect(r.out.String()).NotTo(ContainSubstring("WARNING"), "same backend as the chart")
	g.Consistently(func(g Gomega) {
		g.Expect(reconciles(g)).To(BeZero(), "the local manager reconciled beside the chart's leader")
	}).WithTimeout(5 * time.Second).WithPolling(time.Second).Should(Succeed())
	g.Expect(r.out.String()).NotTo(ContainSubstring("Successfully acquired lease"))
	g.Expect(r.stop(syscall.SIGINT)).To(Succeed())
}
