//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

func caBundle(g Gomega) []byte {
	vwc := &admissionv1.ValidatingWebhookConfiguration{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: "visio-operator"}, vwc)).To(Succeed())
	return vwc.Webhooks[0].ClientConfig.CABundle
}

// TestCertificateRotation deletes the serving certificate's Secret while
// requests keep coming: the operator recreates it, the rotator issues a new
// CA and certificate and injects the CA. Every request is counted; any
// refused for a certificate reason fails the test and is reported.
func TestCertificateRotation(t *testing.T) {
	g := NewWithT(t)
	ns := "entity-rennes"
	before := caBundle(g)

	stream := startAdmissionStream(ns, "rot", 20*time.Millisecond)
	time.Sleep(2 * time.Second)
	start := time.Now()
	kubectl(t, "delete", "secret", "-n", namespace, "visio-operator-webhook-cert")
	g.Eventually(func() bool { return !bytes.Equal(caBundle(g), before) }).WithTimeout(2*time.Minute).Should(BeTrue(), "a new CA is injected")
	injected := time.Since(start)
	// Keep going until a good number of requests passed with the new CA.
	stream.stopAfter(g, 200)
	t.Logf("certificate rotation: new CA injected %s after the Secret was deleted; %s",
		injected.Round(time.Millisecond), stream)
	stream.expectNoneRefused(g)
	waitReady(g, 2)
}

// servingCert is the serving certificate in the webhook Secret, and the CA beside it.
func servingCert(g Gomega) (*x509.Certificate, []byte) {
	s := &corev1.Secret{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "visio-operator-webhook-cert"}, s)).To(Succeed())
	b, _ := pem.Decode(s.Data["tls.crt"])
	g.Expect(b).NotTo(BeNil(), "no certificate in the Secret yet")
	c, err := x509.ParseCertificate(b.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	return c, s.Data["ca.crt"]
}

// fingerprint tells certificates apart (the rotator numbers every serving
// certificate 1).
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:8])
}

// servedCerts are the fingerprints of the certificates the manager Pods
// serve on their webhook port, by Pod.
func servedCerts(g Gomega) map[string]string {
	pods := &corev1.PodList{}
	g.Expect(k8s.List(ctx(), pods, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/name": "visio-operator"})).To(Succeed())
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(p.Status.PodIP, "9443"),
			&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate served
		g.Expect(err).NotTo(HaveOccurred(), "pod %s", p.Name)
		out[p.Name] = fingerprint(conn.ConnectionState().PeerCertificates[0])
		_ = conn.Close()
	}
	return out
}

// observeRenewal: with a serving certificate valid one minute in place, the
// operator renews it before it expires, from the same CA, while admission
// requests keep coming through the Service (dry runs of users in ns): none
// is refused for want of a certificate.
func observeRenewal(t *testing.T, g Gomega, ns string) {
	t.Helper()
	// The validity applies to the certificates issued from now on: start a
	// fresh chain rather than wait out the current one.
	kubectl(t, "delete", "secret", "-n", namespace, "visio-operator-webhook-cert")
	var ca []byte
	g.Eventually(func(g Gomega) {
		var c *x509.Certificate
		c, ca = servingCert(g)
		g.Expect(time.Until(c.NotAfter)).To(BeNumerically("<=", time.Minute))
		g.Expect(caBundle(g)).To(Equal(ca))
		for pod, fp := range servedCerts(g) {
			g.Expect(fp).To(Equal(fingerprint(c)), "pod %s", pod)
		}
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	g.Eventually(func() error { return k8s.Create(ctx(), user(ns, "probe"), client.DryRunAll) }).WithTimeout(time.Minute).Should(Succeed())

	stream := startAdmissionStream(ns, "renew", 50*time.Millisecond)
	start := time.Now()
	first, _ := servingCert(g) // the certificate in use while the requests started
	var renewed *x509.Certificate
	g.Eventually(func(g Gomega) {
		var caNow []byte
		renewed, caNow = servingCert(g)
		g.Expect(fingerprint(renewed)).NotTo(Equal(fingerprint(first)), "renewed")
		g.Expect(caNow).To(Equal(ca), "renewed from the same CA")
		for pod, fp := range servedCerts(g) {
			g.Expect(fp).To(Equal(fingerprint(renewed)), "pod %s serves the renewed certificate", pod)
		}
	}).WithTimeout(4 * time.Minute).WithPolling(time.Second).Should(Succeed())
	renewedAfter := time.Since(start)
	stream.stopAfter(g, 100)
	t.Logf("certificate renewal: first certificate valid until %s, renewed after %s (valid until %s); %s",
		first.NotAfter.Format(time.TimeOnly), renewedAfter.Round(time.Second), renewed.NotAfter.Format(time.TimeOnly), stream)
	stream.expectNoneRefused(g)
	g.Expect(caBundle(g)).To(Equal(ca))
}

// admissionStream is four clients sending server-side dry runs of users
// through the webhooks, each pausing between requests, and counting how they
// end: the load under which a certificate changes.
type admissionStream struct {
	ok, certRefused, otherRefused atomic.Int64
	mu                            sync.Mutex
	firstErrs                     []string
	stop                          chan struct{}
	wg                            sync.WaitGroup
}

// startAdmissionStream starts the clients; users are named prefix-<client>-<n>.
func startAdmissionStream(ns, prefix string, pause time.Duration) *admissionStream {
	s := &admissionStream{stop: make(chan struct{})}
	for w := range 4 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-s.stop:
					return
				default:
				}
				// A server-side dry run goes through the webhooks and writes nothing.
				s.record(k8s.Create(ctx(), user(ns, fmt.Sprintf("%s-%d-%d", prefix, w, i)), client.DryRunAll))
				time.Sleep(pause)
			}
		}()
	}
	return s
}

func (s *admissionStream) record(err error) {
	if err == nil {
		s.ok.Add(1)
		return
	}
	if m := err.Error(); strings.Contains(m, "x509") || strings.Contains(m, "certificate") || strings.Contains(m, "tls") {
		s.certRefused.Add(1)
	} else {
		s.otherRefused.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.firstErrs) < 5 {
		s.firstErrs = append(s.firstErrs, err.Error())
	}
}

// stopAfter lets n more requests be admitted, then stops the clients.
func (s *admissionStream) stopAfter(g Gomega, n int64) {
	from := s.ok.Load()
	g.Eventually(func() int64 { return s.ok.Load() - from }).WithTimeout(time.Minute).Should(BeNumerically(">=", n))
	close(s.stop)
	s.wg.Wait()
}

func (s *admissionStream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d requests admitted, %d refused for a certificate reason, %d refused otherwise; first errors: %q",
		s.ok.Load(), s.certRefused.Load(), s.otherRefused.Load(), s.firstErrs)
}

// expectNoneRefused: no request was refused, for want of a certificate or
// otherwise.
func (s *admissionStream) expectNoneRefused(g Gomega) {
	g.Expect(s.certRefused.Load()).To(BeZero(), "requests refused for want of a certificate")
	g.Expect(s.otherRefused.Load()).To(BeZero())
}

func managerArgs(g Gomega) []string {
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "visio-operator"}, d)).To(Succeed())
	return d.Spec.Template.Spec.Containers[0].Args
}

// TestUpgradeAndBack upgrades the release to other values and back. The
// other values include a serving certificate valid one minute
// (webhook.certValidity, the shortest accepted): while they hold, the
// certificate is renewed under a stream of admission requests, none refused
// (observeRenewal). Back on the defaults, a certificate valid a year returns.
func TestUpgradeAndBack(t *testing.T) {
	g := NewWithT(t)
	e := unprotectedEntity(g, "e2e-renewal")
	t.Cleanup(func() { deleteEntity(NewWithT(t), e) })
	ns := e.NamespaceName()
	g.Eventually(func() error {
		return client.IgnoreAlreadyExists(k8s.Create(ctx(), &v1.LicensePool{
			ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns},
			Spec:       v1.LicensePoolSpec{Licenses: ptr.To[int32](1000), Enforcement: v1.EnforcementDeny},
		}))
	}).WithTimeout(time.Minute).Should(Succeed())

	chart := filepath.Join(root, "charts", "visio-operator")
	run(t, helm, append([]string{"upgrade", release, chart, "-n", namespace, "--wait", "--timeout", "5m",
		"--set", "vmr.sipDomain=visio.changed.example", "--set", "logLevel=debug", "--set", "replicas=3",
		"--set", "webhook.certValidity=1m"}, imageArgs()...)...)
	g.Expect(managerArgs(g)).To(ContainElements("--sip-domain=visio.changed.example", "--zap-log-level=debug", "--webhook-cert-validity=1m"))
	waitReady(g, 3)
	observeRenewal(t, g, ns)

	run(t, helm, append([]string{"upgrade", release, chart, "-n", namespace, "--wait", "--timeout", "5m"}, imageArgs()...)...)
	g.Expect(managerArgs(g)).To(ContainElements("--sip-domain=visio.example", "--zap-log-level=info"))
	waitReady(g, 2)
	// The short-lived certificate is replaced by one valid a year.
	g.Eventually(func(g Gomega) {
		c, _ := servingCert(g)
		g.Expect(time.Until(c.NotAfter)).To(BeNumerically(">", 300*24*time.Hour))
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
	// Admission still works after both rollouts.
	g.Expect(k8s.Create(ctx(), user(ns, "after-upgrade"), client.DryRunAll)).To(Succeed())
}

// TestManagerScaledToZero: with no replica, requests to our kinds fail
// closed with a message that says why; Pods and Namespaces of others are
// not affected.
func TestManagerScaledToZero(t *testing.T) {
	g := NewWithT(t)
	kubectl(t, "scale", "deployment/visio-operator", "-n", namespace, "--replicas=0")
	waitReady(g, 0)
	defer func() {
		kubectl(t, "scale", "deployment/visio-operator", "-n", namespace, "--replicas=2")
		waitReady(NewWithT(t), 2)
	}()
	g.Eventually(func(g Gomega) {
		err := k8s.Create(ctx(), user("entity-rennes", "no-webhook"))
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring(`failed calling webhook "vplatformuser.tenancy.visio.dev"`))
		t.Logf("with no replica: %v", err)
	}).WithTimeout(time.Minute).Should(Succeed())

	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e-others"}}
	g.Expect(k8s.Create(ctx(), other)).To(Succeed())
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: other.Name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "visio.local/pause:e2e", ImagePullPolicy: corev1.PullNever,
		}}},
	}
	g.Expect(k8s.Create(ctx(), pod)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
	}).WithTimeout(2 * time.Minute).Should(Succeed())
	g.Expect(k8s.Delete(ctx(), other)).To(Succeed())
}

// TestUninstallKeepsData: helm uninstall removes the operator but keeps the
// CRDs and every object of the platform.
func TestUninstallKeepsData(t *testing.T) {
	g := NewWithT(t)
	count := func() map[string]int {
		n := map[string]int{}
		for _, k := range []string{"Entity", "LicensePool", "PlatformUser", "VMR"} {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(schema.GroupVersionKind{Group: v1.GroupVersion.Group, Version: "v1alpha1", Kind: k + "List"})
			g.Expect(k8s.List(ctx(), l)).To(Succeed())
			n[k] = len(l.Items)
		}
		return n
	}
	before := count()
	g.Expect(before["PlatformUser"]).To(BeNumerically(">", 50))
	uninstallChart(t)
	for _, crd := range []string{"entities", "licensepools", "platformusers", "vmrs"} {
		c := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: crd + ".tenancy.visio.dev"}, c)).To(Succeed(), "CRD %s kept", crd)
	}
	g.Expect(count()).To(Equal(before))
	// The operator is gone: its webhook configuration too, so our kinds are admitted by the API server alone.
	g.Expect(client.IgnoreNotFound(k8s.Get(ctx(), client.ObjectKey{Name: "visio-operator"}, &admissionv1.ValidatingWebhookConfiguration{}))).To(Succeed())
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "visio-operator"}, d)).NotTo(Succeed())
}
