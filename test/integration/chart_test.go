package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// helmTemplate renders the chart with extra helm flags.
func helmTemplate(g Gomega, args ...string) (string, error) {
	helm := os.Getenv("HELM")
	g.Expect(helm).NotTo(BeEmpty(), "HELM is not set: run the tests with `make test`, which installs helm")
	out, err := exec.Command(helm, append([]string{"template", "visio", filepath.Join(root, "charts", "visio-operator"), "--namespace", "visio-system"}, args...)...).CombinedOutput()
	return string(out), err
}

func renderedObjects(g Gomega, out string) []*unstructured.Unstructured {
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(out, "\n---\n") {
		obj := fromYAML(g, doc)
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
	return objs
}

// TestChartRendersAndApplies renders the Helm chart with helm (installed by
// `make test` from the Go module proxy) and applies every object to the API
// server with a server-side dry run: the manifests are valid, and the CRDs in
// the chart are the ones in config/crd, kept on uninstall.
func TestChartRendersAndApplies(t *testing.T) {
	g := NewWithT(t)
	out, err := helmTemplate(g)
	g.Expect(err).NotTo(HaveOccurred(), out)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "visio-system"}}
	g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), ns))).To(Succeed())

	kinds := map[string]int{}
	for _, obj := range renderedObjects(g, out) {
		kinds[obj.GetKind()]++
		if obj.GetKind() == "CustomResourceDefinition" {
			g.Expect(obj.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"), obj.GetName())
		}
		g.Expect(k8s.Apply(ctx(), client.ApplyConfigurationFromUnstructured(obj), client.DryRunAll, client.ForceOwnership, client.FieldOwner("chart-test"))).
			To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	g.Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 6))
	g.Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
	g.Expect(kinds).To(HaveKeyWithValue("ValidatingWebhookConfiguration", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Service", 2)) // webhook and metrics
	g.Expect(kinds).To(HaveKeyWithValue("Secret", 1))  // the webhook certificate, filled by the operator
	g.Expect(kinds).To(HaveKeyWithValue("PodDisruptionBudget", 1))
	g.Expect(kinds).To(HaveKeyWithValue("NetworkPolicy", 1))
	g.Expect(kinds).To(HaveKey("ClusterRole"))
	g.Expect(kinds).To(HaveKeyWithValue("ValidatingAdmissionPolicy", 7))
	g.Expect(kinds).To(HaveKeyWithValue("ValidatingAdmissionPolicyBinding", 7))
	g.Expect(kinds).To(HaveKeyWithValue("Role", 2), "leader election and the webhook certificate, in the release namespace")

	// The policies name the release's service account and the platform entity
	// of the values.
	raw, err := exec.Command(os.Getenv("HELM"), "template", "visio", filepath.Join(root, "charts", "visio-operator"), "--namespace", "ops",
		"--set", "platformEntity=support", "--show-only", "templates/admission-policies.yaml").CombinedOutput()
	out = string(raw)
	g.Expect(err).NotTo(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring(`expression: "'support'"`))
	g.Expect(out).To(ContainSubstring(`'system:serviceaccount:ops:visio-operator'`))
	g.Expect(out).NotTo(ContainSubstring("visio-system"))

	// The chart's CRDs are byte for byte those of config/crd (make manifests copies them).
	crds, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range crds {
		want, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(filepath.Join(root, "charts", "visio-operator", "files", "crds", filepath.Base(f)))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(got)).To(Equal(string(want)), "chart CRD %s is stale: run make manifests", filepath.Base(f))
	}

	// crds.keep=false lets helm uninstall remove them.
	out, err = helmTemplate(g, "--set", "crds.keep=false")
	g.Expect(err).NotTo(HaveOccurred(), out)
	for _, obj := range renderedObjects(g, out) {
		g.Expect(obj.GetAnnotations()).NotTo(HaveKey("helm.sh/resource-policy"), obj.GetName())
	}
}

// TestChartWebhooksMatchGenerated: the chart's webhook configuration has the
// rules, paths and side effects of the one controller-gen generates from the
// webhook markers, fails closed, and names the chart's Service.
func TestChartWebhooksMatchGenerated(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	want := &admissionv1.ValidatingWebhookConfiguration{}
	g.Expect(yaml.Unmarshal(raw, want)).To(Succeed())

	out, err := helmTemplate(g)
	g.Expect(err).NotTo(HaveOccurred(), out)
	var got *admissionv1.ValidatingWebhookConfiguration
	for _, obj := range renderedObjects(g, out) {
		if obj.GetKind() == "ValidatingWebhookConfiguration" {
			got = &admissionv1.ValidatingWebhookConfiguration{}
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, got)).To(Succeed())
		}
	}
	g.Expect(got).NotTo(BeNil())
	g.Expect(got.Webhooks).To(HaveLen(len(want.Webhooks)))
	for i, w := range want.Webhooks {
		c := got.Webhooks[i]
		g.Expect(c.Name).To(Equal(w.Name))
		g.Expect(*c.ClientConfig.Service.Path).To(Equal(*w.ClientConfig.Service.Path), w.Name)
		g.Expect(c.ClientConfig.Service.Name).To(Equal("visio-operator-webhook"))
		g.Expect(c.ClientConfig.Service.Namespace).To(Equal("visio-system"))
		g.Expect(*c.SideEffects).To(Equal(*w.SideEffects), w.Name)
		g.Expect(*c.FailurePolicy).To(Equal(admissionv1.Fail), w.Name)
		g.Expect(c.Rules).To(HaveLen(len(w.Rules)))
		for j, r := range w.Rules {
			g.Expect(c.Rules[j].Operations).To(Equal(r.Operations), w.Name)
			g.Expect(c.Rules[j].Resources).To(Equal(r.Resources), w.Name)
			g.Expect(c.Rules[j].APIGroups).To(Equal([]string{"tenancy.visio.dev"}), w.Name)
		}
	}
}

// TestChartValuesSchema: values.schema.json refuses a misspelled key and a
// wrong type, at any depth, with a message that names it.
func TestChartValuesSchema(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "replica=3"}, "replica"},
		{[]string{"--set", "webhook.enable=false"}, "enable"},
		{[]string{"--set", "certManager.issuerRef.nme=x"}, "nme"},
		{[]string{"--set-string", "replicas=two"}, "replicas"},
		{[]string{"--set-string", "webhook.enabled=yes"}, "enabled"},
		{[]string{"--set", "vmr.backend=zoom"}, "backend"},
		{[]string{"--set", "webhook.failurePolicy=Sometimes"}, "failurePolicy"},
		{[]string{"--set", "pexip.owner=Paris:prod"}, "owner"},
	} {
		out, err := helmTemplate(g, tc.args...)
		g.Expect(err).To(HaveOccurred(), "%v was accepted", tc.args)
		g.Expect(out).To(ContainSubstring(tc.want), "%v", tc.args)
	}
	// Sound values pass, including the optional modes.
	for _, args := range [][]string{
		{"--set", "certManager.enabled=true"},
		{"--set", "webhook.enabled=false"},
		{"--set", "vmr.backend=pexip", "--set", "pexip.url=https://pexip.example/", "--set", "pexip.credentialsSecret=pexip", "--set", "pexip.caBundle.configMapName=pexip-ca"},
		{"--set", "vmr.backend=pexip", "--set", "pexip.url=https://pexip.example/", "--set", "pexip.credentialsSecret=pexip", "--set", "pexip.owner=paris-prod"},
		{"--set", "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/24"},
	} {
		out, err := helmTemplate(g, args...)
		g.Expect(err).NotTo(HaveOccurred(), "%v: %s", args, out)
	}
}
