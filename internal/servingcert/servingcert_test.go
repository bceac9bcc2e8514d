package servingcert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A Keeper serves nothing and is not ready until the Secret holds a key
// pair; then it serves that pair from memory, writes it where the rotator
// looks for it, and follows the Secret when it changes.
func TestKeeperFollowsTheSecret(t *testing.T) {
	dir := t.TempDir()
	k := &Keeper{o: Options{CertDir: dir, Namespace: "ns", SecretName: "s"}, log: logr.Discard(), rotatorReady: make(chan struct{})}
	if _, err := k.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Fatal("a certificate was served before the Secret held one")
	}
	k.load(&corev1.Secret{}) // created empty, not yet filled by the rotator
	if k.ReadyCheck(nil) == nil {
		t.Fatal("ready with an empty Secret")
	}

	first := pair(t)
	k.load(&corev1.Secret{Data: map[string][]byte{"tls.crt": first[0], "tls.key": first[1]}})
	if k.ReadyCheck(nil) == nil {
		t.Fatal("ready before the CA is in the webhook configuration")
	}
	close(k.rotatorReady)
	if err := k.ReadyCheck(nil); err != nil {
		t.Fatal(err)
	}
	assertServes(t, k, dir, first[0])

	second := pair(t)
	k.load(&corev1.Secret{Data: map[string][]byte{"tls.crt": second[0], "tls.key": second[1]}})
	assertServes(t, k, dir, second[0])

	// A Secret with a broken pair does not replace the working one.
	k.load(&corev1.Secret{Data: map[string][]byte{"tls.crt": []byte("junk"), "tls.key": []byte("junk")}})
	assertServes(t, k, dir, second[0])
}

func assertServes(t *testing.T, k *Keeper, dir string, certPEM []byte) {
	t.Helper()
	c, err := k.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := tls.X509KeyPair(certPEM, mustRead(t, filepath.Join(dir, "tls.key")))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Certificate[0]) != string(want.Certificate[0]) {
		t.Error("the served certificate is not the Secret's")
	}
	if string(mustRead(t, filepath.Join(dir, "tls.crt"))) != string(certPEM) {
		t.Error("the certificate file is not the Secret's")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pair makes a serving certificate with the rotator's own code.
func pair(t *testing.T) [2][]byte {
	t.Helper()
	cr := &rotator.CertRotator{CAName: "ca", CAOrganization: "o", DNSName: "svc.ns.svc", ExtKeyUsages: &[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	now := time.Now()
	ca, err := cr.CreateCACert(now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := cr.CreateCertPEM(ca, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return [2][]byte{cert, key}
}

// A missing Secret is recreated only while the webhook configuration is
// there, and owned by it: a Secret recreated during helm uninstall would
// outlive the release and block the next install.
func TestKeeperRecreatesTheSecretOnlyForItsWebhookConfiguration(t *testing.T) {
	cs := fake.NewClientset()
	k := &Keeper{o: Options{Namespace: "ns", SecretName: "s", WebhookConfigurationName: "vwc"}, log: logr.Discard(), client: cs}
	if err := k.createSecret(t.Context()); err == nil {
		t.Fatal("a Secret was created while the webhook configuration is gone")
	}
	if _, err := cs.CoreV1().Secrets("ns").Get(t.Context(), "s", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("Secret: %v, want NotFound", err)
	}

	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "vwc", UID: "vwc-uid"}}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(t.Context(), vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.createSecret(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err := cs.CoreV1().Secrets("ns").Get(t.Context(), "s", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if o := s.OwnerReferences; len(o) != 1 || o[0].Kind != "ValidatingWebhookConfiguration" || o[0].Name != "vwc" || o[0].UID != "vwc-uid" {
		t.Fatalf("owner references %+v, want the webhook configuration", o)
	}
	if err := k.createSecret(t.Context()); err != nil {
		t.Fatalf("a second create: %v", err)
	}
}
