//go:build e2e

package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend/pexip/pexiptest"
)

// TestUninstallKeepsPexipRooms: the chart installed with the Pexip backend
// (the credentials and a private CA mounted from Secrets, over TLS) against
// the Pexip test server, served by this process on the node's address;
// helm uninstall deletes no conference and no alias, and leaves the VMR. A
// new install takes the room up again, without a duplicate.
func TestUninstallKeepsPexipRooms(t *testing.T) {
	g := NewWithT(t)
	cert, caPEM, err := pexiptest.SelfSignedCertificate(nodeIP)
	g.Expect(err).NotTo(HaveOccurred())
	l, err := net.Listen("tcp", nodeIP+":0")
	g.Expect(err).NotTo(HaveOccurred())
	srv := pexiptest.NewServer("e2e-operator", "e2e-password", pexiptest.WithListener(l), pexiptest.WithTLS(cert))
	t.Cleanup(srv.Close)

	g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}))).To(Succeed())
	secrets := []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "e2e-pexip-credentials", Namespace: namespace},
			StringData: map[string]string{"username": "e2e-operator", "password": "e2e-password"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "e2e-pexip-ca", Namespace: namespace}, Data: map[string][]byte{"ca.crt": caPEM}},
	}
	for _, s := range secrets {
		g.Expect(k8s.Create(ctx(), s)).To(Succeed())
		t.Cleanup(func() { _ = k8s.Delete(ctx(), s) }) // after the chart is given back (cleanups run last-in first-out)
	}
	pexip := []string{"vmr.backend=pexip", "pexip.url=" + srv.URL, "pexip.credentialsSecret=e2e-pexip-credentials",
		"pexip.caBundle.secretName=e2e-pexip-ca"}
	withChart(t, pexip...)

	e := unprotectedEntity(g, "e2e-pexip")
	t.Cleanup(func() { // done at the end of the test; here if it stopped early with the operator in place
		if chartInstalled() {
			deleteEntity(NewWithT(t), e)
		}
	})
	vmr := &v1.VMR{ObjectMeta: metav1.ObjectMeta{Name: "kept-room", Namespace: e.NamespaceName()},
		Spec: v1.VMRSpec{DisplayName: "Kept room", Aliases: []string{"kept-room@e2e.visio.example"}}}
	g.Expect(k8s.Create(ctx(), vmr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(vmr), vmr)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(vmr.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "%v", vmr.Status.Conditions)
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	roomsOf := func() []pexiptest.Conference {
		var out []pexiptest.Conference
		for _, c := range srv.Rooms() {
			// Tagged <owner>:visio-<VMR UID>; the owner defaults to the cluster.
			if strings.HasSuffix(c.Tag, ":visio-"+string(vmr.UID)) {
				out = append(out, c)
			}
		}
		return out
	}
	rooms := roomsOf()
	g.Expect(rooms).To(HaveLen(1), "the VMR's conference is on the Pexip server")
	var aliases []string
	for _, a := range rooms[0].Aliases {
		aliases = append(aliases, a.Alias)
	}
	g.Expect(aliases).To(ContainElements("kept-room@e2e.visio.example", vmr.Status.NumericID))
	ref := vmr.Status.BackendRef
	g.Expect(ref).NotTo(BeEmpty())

	// The rooms of the other VMRs of the cluster, if any, are settled too.
	g.Eventually(func(g Gomega) {
		list := &v1.VMRList{}
		g.Expect(k8s.List(ctx(), list)).To(Succeed())
		for _, v := range list.Items {
			g.Expect(meta.IsStatusConditionTrue(v.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "VMR %s/%s", v.Namespace, v.Name)
		}
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())

	before := srv.Rooms()
	srv.ResetRequests()
	uninstallChart(t) // waits until the manager Pods are gone
	t.Logf("%d conferences on the Pexip server; requests during helm uninstall: %v", len(before), srv.Operations())
	g.Expect(srv.Rooms()).To(ContainElements(before), "no conference or alias deleted or changed by helm uninstall")
	for op, n := range srv.Operations() {
		g.Expect(strings.HasPrefix(op, "delete ") || strings.HasPrefix(op, "update ")).To(BeFalse(), "%d %q requests during helm uninstall", n, op)
	}
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(vmr), vmr)).To(Succeed(), "the VMR is kept")
	g.Expect(vmr.DeletionTimestamp).To(BeNil())
	g.Expect(vmr.Status.BackendRef).To(Equal(ref))

	// Installed again, the operator finds its room: no second conference.
	helmUpgrade(t, pexip...)
	waitReady(g, 2)
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(vmr), vmr)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(vmr.Status.Conditions, v1.ReadyCondition)).To(BeTrue())
		g.Expect(vmr.Status.BackendRef).To(Equal(ref))
		g.Expect(roomsOf()).To(HaveLen(1))
	}).WithTimeout(10 * time.Second).WithPolling(time.Second).Should(Succeed())
	// And deleting the Entity deletes its room from Pexip.
	deleteEntity(g, e)
	g.Expect(roomsOf()).To(BeEmpty(), "the deleted VMR's conference is deleted from Pexip")
}
