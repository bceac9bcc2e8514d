// Command manager runs the visio-operator: the controllers and admission
// webhooks of the tenancy.visio.dev API.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones are checked at admission, whatever the image ships

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/embedded"
	"visio.dev/operator/internal/backend/pexip"
	"visio.dev/operator/internal/operator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "visio-operator:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr, leaderNS, webhookCertDir string
		metricsSecure, leaderElect, enableHTTP2          bool
		enableWebhooks                                   bool
		webhookPort                                      int
		adminGroups                                      string
		vmrBackend, pexipURL, pexipCredsDir, idRange     string
		pexipCAFile                                      string
		o                                                operator.Options
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint (\"0\" disables it).")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, to authenticated and authorised clients only.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica runs the controllers.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's).")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "", "Directory holding tls.crt and tls.key for the webhook server.")
	flag.BoolVar(&enableWebhooks, "enable-webhooks", true, "Serve the admission webhooks (they need a serving certificate in --webhook-cert-dir).")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Serve HTTP/2 on the metrics and webhook servers (off: CVE-2023-44487 and CVE-2023-39325).")
	flag.StringVar(&o.UsernamePrefix, "rbac-username-prefix", "", "Prefix of PlatformUser emails in RBAC subjects; match the API server's --oidc-username-prefix.")
	flag.StringVar(&adminGroups, "platform-admin-groups", "system:masters", "Comma-separated groups whose members are platform administrators (may grant the Concierge role).")
	flag.DurationVar(&o.ReservationTTL, "license-reservation-ttl", 30*time.Second, "How long a license reserved at admission waits for its user to appear.")
	flag.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "Objects of one kind reconciled in parallel.")
	flag.StringVar(&vmrBackend, "vmr-backend", "embedded", "Room backend: embedded (the operator is the registry) or pexip.")
	flag.StringVar(&pexipURL, "pexip-url", "", "Base URL of the Pexip Infinity management node (with --vmr-backend=pexip).")
	flag.StringVar(&pexipCredsDir, "pexip-credentials-dir", "", "Directory with files username and password for the Pexip API (a mounted Secret; read again when it changes).")
	flag.StringVar(&pexipCAFile, "pexip-ca-file", "", "PEM bundle of the CAs that sign the Pexip management node's certificate, added to the system's (a private CA).")
	flag.StringVar(&idRange, "numeric-id-range", "100000-999999", "Range of generated room numbers, MIN-MAX (4 to 12 digits).")
	flag.StringVar(&o.JoinBaseURL, "join-base-url", "https://visio.example/join/", "Base of the rooms' join URL; the room number is appended.")
	flag.StringVar(&o.SIPDomain, "sip-domain", "visio.example", "SIP domain of the rooms' SIP URI.")
	flag.DurationVar(&o.DriftCheckInterval, "drift-check-interval", 10*time.Minute, "How often a Ready room is compared with the backend (0 disables).")
	flag.DurationVar(&o.BackendTimeout, "backend-timeout", 15*time.Second, "Time limit of one backend call.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	o.PlatformAdminGroups = splitList(adminGroups)
	var err error
	if o.NumericIDMin, o.NumericIDMax, err = parseRange(idRange); err != nil {
		return fmt.Errorf("--numeric-id-range: %w", err)
	}
	if o.Backend, err = newBackend(vmrBackend, pexip.Config{URL: pexipURL, CredentialsDir: pexipCredsDir, CAFile: pexipCAFile,
		RequestTimeout: max(o.BackendTimeout/4, time.Second)}); err != nil { // room for retries within one backend call
		return err
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: metricsSecure, TLSOpts: tlsOpts}
	if metricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Cache:                         operator.CacheOptions(),
		Metrics:                       metricsOpts,
		WebhookServer:                 webhook.NewServer(webhook.Options{Port: webhookPort, CertDir: webhookCertDir, TLSOpts: tlsOpts}),
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "visio-operator.tenancy.visio.dev",
		LeaderElectionNamespace:       leaderNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("cannot create manager: %w", err)
	}
	o.DisableWebhooks = !enableWebhooks
	ctx := ctrl.SetupSignalHandler()
	if err := operator.Setup(ctx, mgr, o); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	ready := healthz.Ping
	if enableWebhooks {
		ready = mgr.GetWebhookServer().StartedChecker()
	}
	if err := mgr.AddReadyzCheck("readyz", ready); err != nil {
		return err
	}
	setupLog.Info("Starting manager", "backend", o.Backend.Name())
	return mgr.Start(ctx)
}

func newBackend(kind string, cfg pexip.Config) (backend.Backend, error) {
	switch kind {
	case "embedded":
		return embedded.New(), nil
	case "pexip":
		if cfg.URL == "" || cfg.CredentialsDir == "" {
			return nil, fmt.Errorf("--vmr-backend=pexip needs --pexip-url and --pexip-credentials-dir")
		}
		return pexip.New(cfg)
	}
	return nil, fmt.Errorf("--vmr-backend: unknown backend %q (embedded or pexip)", kind)
}

func parseRange(s string) (uint64, uint64, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("want MIN-MAX, got %q", s)
	}
	min, err1 := strconv.ParseUint(lo, 10, 64)
	max, err2 := strconv.ParseUint(hi, 10, 64)
	if err1 != nil || err2 != nil || min > max || min < 1000 || max > 999999999999 {
		return 0, 0, fmt.Errorf("want MIN-MAX with 1000 <= MIN <= MAX <= 999999999999, got %q", s)
	}
	return min, max, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
