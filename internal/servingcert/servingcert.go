// Package servingcert keeps the serving certificate of the admission webhooks
// when the operator manages it itself (the chart's default, when cert-manager
// is not used).
//
// open-policy-agent/cert-controller's rotator does the certificate work: it
// generates a CA and a serving certificate into a Secret, renews them before
// they expire, and writes the CA into the caBundle of the webhook
// configuration. This package adds what the rotator leaves to the Pod: it
// recreates the Secret when it is missing (the rotator only fills an
// existing one), serves the certificate straight from the Secret as soon as
// it changes (no wait for the kubelet to refresh a mounted volume, which
// would leave the API server with a CA the Pods do not serve yet), and writes
// it to the certificate directory, where the rotator checks it exists.
package servingcert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;list;watch;update

// Options name the objects the certificate is for.
type Options struct {
	// Namespace holds the Secret and the webhook Service (the operator's own).
	Namespace string
	// SecretName is the Secret that holds the CA and the serving certificate.
	SecretName string
	// ServiceName is the webhook Service: the certificate is valid for its DNS names.
	ServiceName string
	// WebhookConfigurationName is the ValidatingWebhookConfiguration whose caBundle is kept.
	WebhookConfigurationName string
	// CertDir receives tls.crt and tls.key (it must be writable: an emptyDir).
	CertDir string
	// CertValidity is how long a serving certificate is valid; it is renewed
	// when a third of that is left. The CA is valid ten times as long.
	CertValidity time.Duration
}

const (
	certName = "tls.crt"
	keyName  = "tls.key"
)

// Keeper serves the current certificate and reports readiness.
type Keeper struct {
	o             Options
	log           logr.Logger
	rotatorReady  chan struct{}
	cert          atomic.Pointer[tls.Certificate]
	client        kubernetes.Interface
	mu            sync.Mutex // serialises file writes
	written       []byte
	secretMissing chan struct{}
}

// Setup adds the rotator and the Keeper to the manager. They run on every
// replica, leader or not: every replica serves the webhooks.
func Setup(mgr manager.Manager, o Options, log logr.Logger) (*Keeper, error) {
	if o.Namespace == "" || o.SecretName == "" || o.ServiceName == "" || o.WebhookConfigurationName == "" || o.CertDir == "" {
		return nil, errors.New("the webhook certificate needs a namespace, Secret, Service, webhook configuration and certificate directory")
	}
	if o.CertValidity < time.Minute {
		return nil, fmt.Errorf("a certificate validity of %s is too short", o.CertValidity)
	}
	if err := os.MkdirAll(o.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the certificate directory: %w", err)
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	k := &Keeper{o: o, log: log, rotatorReady: make(chan struct{}), client: cs, secretMissing: make(chan struct{}, 1)}
	svc := o.ServiceName + "." + o.Namespace + ".svc"
	cr := &rotator.CertRotator{
		SecretKey:              types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName},
		CertDir:                o.CertDir,
		CAName:                 "visio-operator-webhook-ca",
		CAOrganization:         "visio-operator",
		DNSName:                svc,
		ExtraDNSNames:          []string{svc + ".cluster.local", o.ServiceName + "." + o.Namespace},
		IsReady:                k.rotatorReady,
		Webhooks:               []rotator.WebhookInfo{{Name: o.WebhookConfigurationName, Type: rotator.Validating}},
		RequireLeaderElection:  false,
		CaCertDuration:         10 * o.CertValidity,
		ServerCertDuration:     o.CertValidity,
		LookaheadInterval:      o.CertValidity / 3,
		RotationCheckFrequency: min(o.CertValidity/10, time.Hour),
		EnableReadinessCheck:   true,
		ControllerName:         "webhook-cert-rotator",
		FieldOwner:             "visio-operator",
	}
	if err := rotator.AddRotator(mgr, cr); err != nil {
		return nil, fmt.Errorf("cannot set up the certificate rotator: %w", err)
	}
	if err := mgr.Add(k); err != nil {
		return nil, err
	}
	return k, nil
}

// NeedLeaderElection is false: every replica needs the certificate.
func (k *Keeper) NeedLeaderElection() bool { return false }

// Start watches the Secret until ctx ends.
func (k *Keeper) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 10*time.Minute,
		informers.WithNamespace(k.o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.o.SecretName).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.load(obj) },
		UpdateFunc: func(_, obj any) { k.load(obj) },
		DeleteFunc: func(any) { k.missing() },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	if len(inf.GetStore().List()) == 0 {
		k.missing()
	}
	for {
		select {
		case <-ctx.Done():
			factory.Shutdown()
			return nil
		case <-k.secretMissing:
			if err := k.createSecret(ctx); err != nil {
				k.log.Error(err, "Cannot recreate the webhook certificate Secret; retrying", "secret", klogKey(k.o))
				time.AfterFunc(5*time.Second, k.missing)
			}
		}
	}
}

func (k *Keeper) missing() {
	select {
	case k.secretMissing <- struct{}{}:
	default:
	}
}

// createSecret creates the Secret empty: the rotator sees it and fills it
// with a new CA and certificate, then injects the CA. The Secret is owned by
// the webhook configuration, and is not created while that is gone or
// going: helm uninstall deletes both, and a Secret recreated by a Pod still
// stopping would outlive the release and block the next install (Helm does
// not adopt what it did not create).
func (k *Keeper) createSecret(ctx context.Context) error {
	vwc, err := k.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, k.o.WebhookConfigurationName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || (err == nil && vwc.DeletionTimestamp != nil):
		return fmt.Errorf("the webhook configuration %s is gone: not recreating its certificate", k.o.WebhookConfigurationName)
	case err != nil:
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: k.o.SecretName, Namespace: k.o.Namespace,
		Labels: map[string]string{"app.kubernetes.io/name": "visio-operator", "app.kubernetes.io/component": "webhook"},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingWebhookConfiguration",
			Name: vwc.Name, UID: vwc.UID,
		}},
	}}
	_, err = k.client.CoreV1().Secrets(k.o.Namespace).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		k.log.Info("Created the webhook certificate Secret, which was missing", "secret", klogKey(k.o))
	}
	return err
}

// load takes the certificate of the Secret into use and writes it to CertDir.
func (k *Keeper) load(obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok || len(s.Data[certName]) == 0 || len(s.Data[keyName]) == 0 {
		return // still empty: the rotator fills it
	}
	pair, err := tls.X509KeyPair(s.Data[certName], s.Data[keyName])
	if err != nil {
		k.log.Error(err, "The webhook certificate Secret holds no valid key pair; waiting for the rotator", "secret", klogKey(k.o))
		return
	}
	k.cert.Store(&pair)
	if err := k.write(s.Data[certName], s.Data[keyName]); err != nil {
		k.log.Error(err, "Cannot write the webhook certificate", "dir", k.o.CertDir)
	}
}

func (k *Keeper) write(cert, key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if bytes.Equal(k.written, cert) {
		return nil
	}
	// Key first, then the certificate: the rotator checks the certificate's presence.
	for _, f := range []struct {
		name string
		data []byte
	}{{keyName, key}, {certName, cert}} {
		tmp := filepath.Join(k.o.CertDir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(k.o.CertDir, f.name)); err != nil {
			return err
		}
	}
	k.written = bytes.Clone(cert)
	return nil
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (k *Keeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no webhook serving certificate yet")
}

// ReadyCheck passes once the certificate is served and its CA is in the
// webhook configuration (a healthz.Checker).
func (k *Keeper) ReadyCheck(*http.Request) error {
	if k.cert.Load() == nil {
		return errors.New("no webhook serving certificate yet")
	}
	select {
	case <-k.rotatorReady:
		return nil
	default:
		return errors.New("the webhook CA is not in the webhook configuration yet")
	}
}

func klogKey(o Options) string { return o.Namespace + "/" + o.SecretName }
