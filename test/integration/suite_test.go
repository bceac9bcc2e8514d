// Package integration tests the operator as it ships: the real manager with
// its controllers and admission webhooks, against a real kube-apiserver, etcd
// and kube-controller-manager (garbage collector and namespace controllers)
// built by hack/controlplane.sh.
package integration

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend/embedded"
	"visio.dev/operator/internal/operator"
)

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	k8s     client.Client // the platform administrator (system:masters)
	scheme  = runtime.NewScheme()
	root    = filepath.Join("..", "..")
)

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))
	// stderr gets errors only; suiteLog gets every level, for the PIN-leak
	// scans, unless no test runs.
	flag.Parse()
	opts := []zap.Opts{zap.WriteTo(os.Stderr), zap.UseDevMode(false), zap.Level(zapLevel())}
	if keepingSuiteLog = !benchmarksOnly(); keepingSuiteLog {
		opts = append(opts, alsoToSuiteLog())
	}
	logf.SetLogger(zap.New(opts...))
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds the control plane")
		return 1
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}},
	}
	var err error
	if cfg, err = testEnv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the control plane:", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	stopKCM, err := startControllerManager()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopKCM()
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if managerCfg, err = managerIdentity(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := installPolicies(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	startSharedManager()
	code := m.Run()
	stopSharedManager()
	return code
}

func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		return -1
	}
	return 2 // errors only: the suite prints what fails
}

// startControllerManager runs kube-controller-manager's garbage collector and
// namespace controllers, so owner references and namespace deletion behave as
// on a real cluster.
func startControllerManager() (func(), error) {
	user, err := testEnv.AddUser(envtest.User{Name: "kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot create the controller manager's user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "visio-kcm-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-controller-manager"),
		"--kubeconfig="+path, "--controllers=garbage-collector-controller,namespace-controller",
		"--leader-elect=false", "--secure-port=0", "--concurrent-gc-syncs=5", "--v=0")
	logFile, err := os.Create(filepath.Join(dir, "kcm.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start kube-controller-manager: %w", err)
	}
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		_ = os.RemoveAll(dir)
	}, nil
}

// managerCfg is the manager's identity: a service account bound to the
// ClusterRole the operator ships and to nothing else, so that every test also
// proves that least-privilege role is enough.
var managerCfg *rest.Config

const managerServiceAccount = "system:serviceaccount:visio-system:visio-operator"

// managerIdentity installs the shipped ClusterRoles (the manager's own, and
// the platform roles it binds), binds the manager's to the service account,
// installs its leader-election Role in its namespace, and returns a config
// that authenticates as that account.
func managerIdentity() (*rest.Config, error) {
	for _, file := range []string{"role.yaml", "roles.yaml"} {
		if err := applyClusterRoles(filepath.Join(root, "config", "rbac", file)); err != nil {
			return nil, err
		}
	}
	if err := k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "visio-system"}}); err != nil {
		return nil, fmt.Errorf("cannot create the manager's namespace: %w", err)
	}
	if err := applyManifests(filepath.Join(root, "config", "rbac", "leader_election_role.yaml")); err != nil {
		return nil, err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "visio-operator-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "visio-operator-manager"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: managerServiceAccount}},
	}
	if err := k8s.Create(ctx(), binding); err != nil {
		return nil, fmt.Errorf("cannot bind the manager's ClusterRole: %w", err)
	}
	user, err := testEnv.AddUser(envtest.User{Name: managerServiceAccount, Groups: []string{"system:serviceaccounts", "system:authenticated"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot create the manager's user: %w", err)
	}
	return user.Config(), nil
}

// applyClusterRoles creates or updates the ClusterRoles of a manifest file.
func applyClusterRoles(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		role := &rbacv1.ClusterRole{}
		if err := yaml.UnmarshalStrict([]byte(doc), role); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if role.Name == "" {
			continue
		}
		if err := k8s.Create(ctx(), role); err != nil {
			return fmt.Errorf("%s: cannot create ClusterRole %s: %w", path, role.Name, err)
		}
	}
	return nil
}

// writeCounter counts the manager's API requests: reads, and writes by
// resource ("platformusers/status", "licensepools/status", "events", ...).
type writeCounter struct {
	writes, reads atomic.Int64

	mu         sync.Mutex
	byResource map[string]int64
}

func (c *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			c.reads.Add(1)
		default:
			c.writes.Add(1)
			c.mu.Lock()
			if c.byResource == nil {
				c.byResource = map[string]int64{}
			}
			c.byResource[resourceOf(r.URL.Path)]++
			c.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

// allWrites is the key of snapshot's total.
const allWrites = "*"

// snapshot copies the write counts by resource, with the total under allWrites.
func (c *writeCounter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := maps.Clone(c.byResource)
	if out == nil {
		out = map[string]int64{}
	}
	out[allWrites] = c.writes.Load()
	return out
}

// resourceOf names the resource of an API path, with its subresource:
// /apis/g/v/namespaces/ns/platformusers/u/status is "platformusers/status".
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// Drop "api/v1" or "apis/<group>/<version>", then "namespaces/<ns>".
	if len(parts) > 0 && parts[0] == "api" {
		parts = parts[min(2, len(parts)):]
	} else {
		parts = parts[min(3, len(parts)):]
	}
	if len(parts) > 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return ""
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var managerMu sync.Mutex

// startManager runs the real manager, with its webhooks, until the returned
// function is called; that function waits until it has stopped. counter, when
// not nil, counts the manager's API requests.
func startManager(counter *writeCounter, opts operator.Options) (stop func()) {
	return startManagerOn(counter, opts, testEnv.WebhookInstallOptions.LocalServingPort)
}

// startManagerOn is startManager with the webhook server on another port
// (behind the replicas' proxy).
func startManagerOn(counter *writeCounter, opts operator.Options, port int) (stop func()) {
	managerMu.Lock()
	mgr := newTestManager(counter, port)
	ctx, cancel := context.WithCancel(context.Background())
	if err := operator.Setup(ctx, mgr, opts); err != nil {
		panic(err)
	}
	stopMgr := runTestManager(ctx, cancel, mgr, port)
	return func() {
		stopMgr()
		managerMu.Unlock()
	}
}

// newTestManager is a manager as cmd/ builds it, as the manager's service
// account, with its webhook server on port; counter, when not nil, counts its
// API requests.
func newTestManager(counter *writeCounter, port int) ctrl.Manager {
	mcfg := rest.CopyConfig(managerCfg)
	mcfg.QPS, mcfg.Burst = 500, 1000
	if counter != nil {
		mcfg.WrapTransport = counter.wrap
	}
	wo := testEnv.WebhookInstallOptions
	mgr, err := ctrl.NewManager(mcfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  operator.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The tests start a new manager in the same process to restart it.
		Controller:    config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhook.NewServer(webhook.Options{Host: wo.LocalServingHost, Port: port, CertDir: wo.LocalServingCertDir}),
	})
	if err != nil {
		panic(err)
	}
	return mgr
}

// runTestManager starts mgr, waits until its cache is synced and its
// webhooks answer on port, and returns what stops it.
func runTestManager(ctx context.Context, cancel context.CancelFunc, mgr ctrl.Manager, port int) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		panic("cache did not sync")
	}
	waitForWebhooksOn(port)
	return func() {
		cancel()
		<-done
	}
}

func testOptions() operator.Options {
	return operator.Options{
		PlatformEntity:          platformEntity,
		PlatformAdminGroups:     []string{"system:masters"},
		ReservationTTL:          30 * time.Second,
		MaxConcurrentReconciles: 4,
		Backend:                 embedded.New(),
		NumericIDs:              operator.NumericIDRange{Min: 100000, Max: 999999},
		JoinBaseURL:             "https://visio.example/join/",
		SIPDomain:               "visio.example",
		DriftCheckInterval:      time.Minute,
		BackendTimeout:          5 * time.Second,
	}
}

// waitForWebhooksOn waits until a webhook server answers on port.
func waitForWebhooksOn(port int) {
	wo := testEnv.WebhookInstallOptions
	addr := fmt.Sprintf("https://%s:%d/", wo.LocalServingHost, port)
	tr := &http.Transport{TLSClientConfig: insecureTLS()}
	for i := 0; i < 100; i++ {
		if resp, err := (&http.Client{Transport: tr, Timeout: time.Second}).Get(addr); err == nil {
			_ = resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	panic("webhook server did not start")
}

// insecureTLS is for probing the local webhook server only.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // loopback probe

// stopShared stops the manager the tests share; tests that restart it call
// stopSharedManager and one of the start functions.
var stopShared func()

func startSharedManager()                        { stopShared = startManager(nil, testOptions()) }
func startSharedManagerCounting(c *writeCounter) { stopShared = startManager(c, testOptions()) }
func stopSharedManager()                         { stopShared() }

// withManager replaces the shared manager, for the rest of the test, by one
// whose options change adjusts (another VMR backend, say); the shared manager
// comes back when the test ends. It returns a function that restarts the
// replacement in process, as a crash and a new pod would.
func withManager(t testing.TB, counter *writeCounter, change func(*operator.Options)) (restart func()) {
	t.Helper()
	opts := testOptions()
	change(&opts)
	stopSharedManager()
	stopShared = startManager(counter, opts)
	t.Cleanup(func() {
		stopSharedManager()
		startSharedManager()
	})
	return func() {
		stopSharedManager()
		stopShared = startManager(counter, opts)
	}
}
