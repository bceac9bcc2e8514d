//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/visioctl"
)

// visio runs kubectl visio in process against the node, as the cluster
// administrator of the test kubeconfig unless args say --as.
func visio(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut}
	code := visioctl.Run(context.Background(), append([]string{"--kubeconfig", os.Getenv("KUBECONFIG")}, args...), streams,
		genericclioptions.NewConfigFlags(false))
	return code, out.String(), errOut.String()
}

// TestLicenseRequestThroughThePlugin: the chart installs the LicenseRequest
// CRD, the roles that let Administrators ask and Concierges decide, and the
// decision policy; the sample entity's Administrator asks with the plugin,
// the cluster administrator approves with it, and the pool's capacity grows
// by what was approved; deleting the request gives it back.
func TestLicenseRequestThroughThePlugin(t *testing.T) {
	g := NewWithT(t)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "licenserequests.tenancy.visio.dev"}, crd)).To(Succeed())
	role := &rbacv1.ClusterRole{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "visio-entity-administrator"}, role)).To(Succeed())
	g.Expect(role.Rules).To(ContainElement(HaveField("Resources", ContainElement("licenserequests"))))
	for _, name := range []string{"visio-license-decision"} {
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, &admissionregistrationv1.ValidatingAdmissionPolicy{})).To(Succeed())
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: name}, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{})).To(Succeed())
	}

	const ns = "entity-rennes"
	pool := &v1.LicensePool{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "default"}, pool)).To(Succeed())
	before := pool.Status.Capacity

	var name string
	g.Eventually(func(g Gomega) {
		code, out, errOut := visio(t, "--as", "anne.leguen@rennes.example", "--as-group", "system:authenticated",
			"licenses", "request", "--licenses", "5", "--reason", "end-to-end: new staff", "-n", ns)
		g.Expect(code).To(Equal(0), "%s%s", out, errOut)
		m := regexp.MustCompile(`^licenserequest/(\S+) created`).FindStringSubmatch(out)
		g.Expect(m).To(HaveLen(2), out)
		name = m[1]
	}).WithTimeout(time.Minute).Should(Succeed(), "the Administrator's role binding may take a moment")

	code, out, errOut := visio(t, "licenses", "approve", name, "-n", ns, "--message", "approved end to end")
	g.Expect(code).To(Equal(0), "%s%s", out, errOut)
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "default"}, pool)).To(Succeed())
		g.Expect(pool.Status.Capacity).To(Equal(before + 5))
	}).WithTimeout(time.Minute).Should(Succeed())
	lr := &v1.LicenseRequest{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, lr)).To(Succeed())
	t.Logf("pool capacity %d → %d; request %s: %v", before, pool.Status.Capacity, name, lr.Status.Conditions)

	g.Expect(k8s.Delete(ctx(), lr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "default"}, pool)).To(Succeed())
		g.Expect(pool.Status.Capacity).To(Equal(before))
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, &v1.LicenseRequest{}))).To(BeTrue(),
			"the pool lets the request go once it no longer counts it")
	}).WithTimeout(time.Minute).Should(Succeed())
}
