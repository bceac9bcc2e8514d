// Command manager runs the visio-operator: the controllers and admission
// webhooks of the tenancy.visio.dev API.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
	_ "time/tzdata" // time zones are checked at admission, whatever the image ships

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
	"visio.dev/operator/internal/servingcert"
)

// version is the operator's version, set at build time with
// -ldflags "-X main.version=..." (make build, make image, the Dockerfile).
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "visio-operator:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr, leaderNS, webhookCertDir string
		pprofAddr                                        string
		metricsSecure, leaderElect, enableHTTP2          bool
		enableWebhooks                                   bool
		webhookPort, kubeAPIBurst                        int
		kubeAPIQPS                                       float64
		o                                                operator.Options
		backendOpts                                      operator.BackendOptions
		printVersion                                     bool
		cert                                             servingcert.Options
	)
	flag.BoolVar(&printVersion, "version", false, "Print the version and exit.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint (\"0\" disables it).")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, to authenticated and authorised clients only.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "Address of Go's profiling endpoints, /debug/pprof/ (\"0\", the default, disables them; they are unauthenticated: bind to localhost and port-forward).")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica runs the controllers.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's).")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "Directory holding tls.crt and tls.key for the webhook server.")
	flag.StringVar(&cert.SecretName, "webhook-cert-secret", "", "Manage the webhook serving certificate in this Secret: generate it, renew it and inject its CA into the webhook configuration (empty: read it from --webhook-cert-dir).")
	flag.StringVar(&cert.Namespace, "webhook-namespace", os.Getenv("POD_NAMESPACE"), "Namespace of the webhook Service and certificate Secret (default: $POD_NAMESPACE).")
	flag.StringVar(&cert.ServiceName, "webhook-service", "visio-operator-webhook", "Name of the webhook Service, for the certificate's DNS names.")
	flag.StringVar(&cert.WebhookConfigurationName, "webhook-configuration", "visio-operator", "Name of the ValidatingWebhookConfiguration that receives the CA.")
	flag.DurationVar(&cert.CertValidity, "webhook-cert-validity", 365*24*time.Hour, "Validity of a generated serving certificate; renewed when a third is left.")
	flag.BoolVar(&enableWebhooks, "enable-webhooks", true, "Serve the admission webhooks (they need a serving certificate in --webhook-cert-dir).")
	// client-go's own default (5 requests per second, controller-runtime raises
	// it to 20) would make a burst of a few thousand users wait on this process
	// rather than on the API server, whose priority and fairness is what
	// protects it. These leave it the pace a burst of ~200 users a second needs.
	flag.Float64Var(&kubeAPIQPS, "kube-api-qps", 200, "Requests per second to the API server, sustained.")
	flag.IntVar(&kubeAPIBurst, "kube-api-burst", 400, "Requests to the API server allowed at once above --kube-api-qps.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Serve HTTP/2 on the metrics and webhook servers (off: CVE-2023-44487 and CVE-2023-39325).")
	o.BindFlags(flag.CommandLine)
	backendOpts.BindFlags(flag.CommandLine)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if printVersion {
		fmt.Println("visio-operator", version)
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	restCfg := ctrl.GetConfigOrDie()
	restCfg.QPS, restCfg.Burst = float32(kubeAPIQPS), kubeAPIBurst
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))
	if backendOpts.Kind == "pexip" && backendOpts.PexipOwner == "" {
		c, err := client.New(restCfg, client.Options{Scheme: scheme})
		if err != nil {
			return fmt.Errorf("cannot reach the API server: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = backendOpts.DefaultPexipOwner(ctx, c)
		cancel()
		if err != nil {
			return err
		}
	}
	var err error
	if o.Backend, err = backendOpts.New(o.BackendTimeout); err != nil {
		return err
	}
	o.DisableWebhooks = !enableWebhooks
	if err := o.Validate(); err != nil {
		return err
	}

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	webhookTLSOpts := tlsOpts
	var keeper *servingcert.Keeper // set up below, once the manager exists, before it starts the server
	manageCert := enableWebhooks && cert.SecretName != ""
	if manageCert {
		webhookTLSOpts = append(append([]func(*tls.Config){}, tlsOpts...), func(c *tls.Config) {
			c.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return keeper.GetCertificate(h) }
		})
		if webhookCertDir == "" {
			webhookCertDir = os.TempDir() + "/k8s-webhook-server/serving-certs"
		}
		cert.CertDir = webhookCertDir
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: metricsSecure, TLSOpts: tlsOpts}
	if metricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         operator.CacheOptions(),
		Metrics:                       metricsOpts,
		WebhookServer:                 webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: webhookCertDir, TLSOpts: webhookTLSOpts}),
		HealthProbeBindAddress:        probeAddr,
		PprofBindAddress:              pprofAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "visio-operator.tenancy.visio.dev",
		LeaderElectionNamespace:       leaderNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("cannot create manager: %w", err)
	}
	if manageCert {
		if keeper, err = servingcert.Setup(mgr, cert, ctrl.Log.WithName("webhook-cert")); err != nil {
			return err
		}
	}
	ctx := ctrl.SetupSignalHandler()
	if err := operator.Setup(ctx, mgr, o); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once the caches are synced and, with webhooks, once the server
	// answers with a certificate whose CA the API server has.
	if err := mgr.AddReadyzCheck("informers", func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("caches not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	if enableWebhooks {
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	if keeper != nil {
		if err := mgr.AddReadyzCheck("webhook-certificate", keeper.ReadyCheck); err != nil {
			return err
		}
	}
	setupLog.Info("Starting manager", "version", version, "backend", o.Backend.Name(), "pexipOwner", backendOpts.PexipOwner)
	return mgr.Start(ctx)
}
