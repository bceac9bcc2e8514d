package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestChartRendersAndApplies renders the Helm chart with helm (installed by
// `make test` from the Go module proxy) and applies every object to the API
// server with a server-side dry run: the manifests are valid, and the CRDs in
// the chart are the ones in config/crd.
func TestChartRendersAndApplies(t *testing.T) {
	g := NewWithT(t)
	helm := os.Getenv("HELM")
	g.Expect(helm).NotTo(BeEmpty(), "HELM is not set: run the tests with `make test`, which installs helm")
	out, err := exec.Command(helm, "template", "visio", filepath.Join(root, "charts", "visio-operator"), "--namespace", "visio-system").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "visio-system"}}
	g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), ns))).To(Succeed())

	kinds := map[string]int{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		obj := fromYAML(g, doc)
		if len(obj.Object) == 0 {
			continue
		}
		kinds[obj.GetKind()]++
		g.Expect(k8s.Apply(ctx(), client.ApplyConfigurationFromUnstructured(obj), client.DryRunAll, client.ForceOwnership, client.FieldOwner("chart-test"))).
			To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	g.Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 4))
	g.Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
	g.Expect(kinds).To(HaveKey("ClusterRole"))
	g.Expect(kinds).To(HaveKeyWithValue("ValidatingAdmissionPolicy", 5))
	g.Expect(kinds).To(HaveKeyWithValue("ValidatingAdmissionPolicyBinding", 5))
	g.Expect(kinds).To(HaveKeyWithValue("Role", 1), "leader election, in the release namespace")

	// The policies name the release's service account and the platform entity
	// of the values.
	out, err = exec.Command(helm, "template", "visio", filepath.Join(root, "charts", "visio-operator"), "--namespace", "ops",
		"--set", "platformEntity=support", "--show-only", "templates/admission-policies.yaml").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	g.Expect(string(out)).To(ContainSubstring(`expression: "'support'"`))
	g.Expect(string(out)).To(ContainSubstring(`'system:serviceaccount:ops:visio-operator'`))
	g.Expect(string(out)).NotTo(ContainSubstring("visio-system"))

	// The chart's CRDs are byte for byte those of config/crd (make manifests copies them).
	crds, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range crds {
		want, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(filepath.Join(root, "charts", "visio-operator", "templates", "crds", filepath.Base(f)))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(got)).To(Equal(string(want)), "chart CRD %s is stale: run make manifests", filepath.Base(f))
	}
}
