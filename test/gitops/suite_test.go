//go:build gitops

// Package gitops tests what docs/gitops.md tells platform teams, with the real
// Flux source-controller and kustomize-controller (built by hack/gitops.sh)
// reading a git repository served by this process, against the local control
// plane of make run (etcd, kube-apiserver, kube-controller-manager) with the
// operator's manager running as a process, with its admission webhooks.
// make test-gitops runs it; it is not meant to run anywhere else.
//
// The steps of TestGitOps run in order on one repository: each commits to it and
// reads back what Flux reports (Kustomization conditions, inventory, events).
package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "visio.dev/operator/api/v1alpha1"
)

// The operator's identity, as config/rbac binds it and config/policies admits it.
const operatorServiceAccount = "system:serviceaccount:visio-system:visio-operator"

var (
	root   = filepath.Join("..", "..")
	scheme = runtime.NewScheme()

	testEnv *envtest.Environment
	cfg     *rest.Config
	k8s     client.Client // the platform administrator (system:masters)

	work   string        // every file the suite writes, removed at the end
	repo   *platformRepo // the platform repository, served over HTTP on the loopback
	procs  []*process    // the processes the suite started, stopped at the end
	events *eventSink    // the Flux controllers' events
)

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(rbacv1.AddToScheme(scheme))
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	assets, flux := os.Getenv("KUBEBUILDER_ASSETS"), os.Getenv("FLUX_ASSETS")
	if assets == "" || flux == "" {
		fmt.Fprintln(os.Stderr, "gitops: run these tests with make test-gitops, which builds the control plane (KUBEBUILDER_ASSETS) and Flux (FLUX_ASSETS)")
		return 1
	}
	var err error
	if work, err = os.MkdirTemp("", "visio-gitops-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
		if code != 0 {
			for _, p := range procs {
				p.printTail(os.Stderr, 60)
			}
		}
		if repo != nil {
			repo.close()
		}
		if events != nil {
			events.close()
		}
		if testEnv != nil {
			if err := testEnv.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "gitops: cannot stop the control plane:", err)
			}
		}
		if err := os.RemoveAll(work); err != nil {
			fmt.Fprintln(os.Stderr, "gitops: cannot remove", work, err)
		}
	}()
	if err := setUp(assets, flux); err != nil {
		fmt.Fprintln(os.Stderr, "gitops:", err)
		return 1
	}
	return m.Run()
}

// setUp starts the control plane as make run does (the webhook configuration
// of config/webhook pointing at a local port, kube-controller-manager for
// namespace deletion and garbage collection), the git server, and the two
// Flux controllers. The operator's own objects are not installed: the
// repository's first layer does that, and the manager starts once they are
// there (startManagerWhenInstalled).
func setUp(assets, flux string) error {
	// The manager serves the webhooks only once the repository's first layer
	// is applied, many seconds after the API server is told where they are:
	// a port of the ephemeral range could meanwhile be taken by any outgoing
	// connection of the machine.
	webhookPort, err := freePort()
	if err != nil {
		return err
	}
	testEnv = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(flux, "crds")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
			LocalServingHost: "127.0.0.1",
			LocalServingPort: webhookPort,
		},
	}
	if cfg, err = testEnv.Start(); err != nil {
		return fmt.Errorf("cannot start the control plane: %w", err)
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	kcmConfig, err := kubeconfigFor("kube-controller-manager", "system:masters")
	if err != nil {
		return err
	}
	if _, err := startProcess("kube-controller-manager", filepath.Join(assets, "kube-controller-manager"), []string{
		"--kubeconfig=" + kcmConfig, "--controllers=garbage-collector-controller,namespace-controller",
		"--leader-elect=false", "--secure-port=0",
	}, nil); err != nil {
		return err
	}

	if repo, err = newPlatformRepo(filepath.Join(work, "git")); err != nil {
		return err
	}
	return startFlux(flux)
}

// startFlux runs source-controller and kustomize-controller as cluster
// administrators, watching every namespace, without leader election and
// without notification-controller: their events go to the Kubernetes Event API
// and to the suite's eventSink.
func startFlux(flux string) error {
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fluxNamespace}}); err != nil {
		return err
	}
	kubeconfig, err := kubeconfigFor("flux", "system:masters")
	if err != nil {
		return err
	}
	if events, err = startEventSink(); err != nil {
		return err
	}
	env := []string{"KUBECONFIG=" + kubeconfig, "RUNTIME_NAMESPACE=" + fluxNamespace}
	storage, err := freeAddr()
	if err != nil {
		return err
	}
	common := func() ([]string, error) {
		metrics, err1 := freeAddr()
		health, err2 := freeAddr()
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		return []string{"--metrics-addr=" + metrics, "--health-addr=" + health, "--enable-leader-election=false",
			"--watch-all-namespaces=true", "--events-addr=" + events.URL, "--log-encoding=console"}, nil
	}
	args, err := common()
	if err != nil {
		return err
	}
	storagePath := filepath.Join(work, "artifacts")
	if err := os.Mkdir(storagePath, 0o700); err != nil {
		return err
	}
	if _, err := startProcess("source-controller", filepath.Join(flux, "source-controller"), append(args,
		"--storage-path="+storagePath, "--storage-addr="+storage, "--storage-adv-addr="+storage), env); err != nil {
		return err
	}
	if args, err = common(); err != nil {
		return err
	}
	// A dependency not Ready yet is looked at again after 2s, not 30s: the
	// layers follow one another within seconds.
	_, err = startProcess("kustomize-controller", filepath.Join(flux, "kustomize-controller"), append(args,
		"--requeue-dependency=2s"), env)
	return err
}

const fluxNamespace = "flux-system"

// startManager builds the manager and runs it as make run does: as the
// operator's service account, with its webhooks on the port envtest
// registered, and with leader election in visio-system as the chart runs it.
func startManager() error {
	bin := filepath.Join(work, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot build the manager: %v\n%s", err, out)
	}
	kubeconfig, err := kubeconfigFor(operatorServiceAccount, "system:serviceaccounts", "system:authenticated")
	if err != nil {
		return err
	}
	metrics, err1 := freeAddr()
	health, err2 := freeAddr()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	wo := testEnv.WebhookInstallOptions
	_, err = startProcess("manager", bin, []string{
		"--kubeconfig=" + kubeconfig, "--metrics-bind-address=" + metrics, "--metrics-secure=false",
		"--health-probe-bind-address=" + health,
		fmt.Sprintf("--webhook-port=%d", wo.LocalServingPort), "--webhook-cert-dir=" + wo.LocalServingCertDir,
		"--leader-elect", "--leader-election-namespace=visio-system",
	}, nil)
	return err
}

// kubeconfigFor writes a kubeconfig for a user of the test control plane.
func kubeconfigFor(name string, groups ...string) (string, error) {
	user, err := testEnv.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("cannot create the user %s: %w", name, err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(work, strings.NewReplacer(":", "-").Replace(name)+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// freeAddr is a loopback address with a port free a moment ago (freePort).
func freeAddr() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// freePort is a port free on every interface a moment ago, below the
// kernel's ephemeral range, so that no outgoing connection takes it before
// the process it is meant for listens (a port the kernel hands out, with
// "127.0.0.1:0", is one of those every connection may get). It starts from
// a place of its own for each test process, so that parallel runs rarely
// try the same ports.
func freePort() (int, error) {
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const base = 10000
	if low <= base {
		return 0, fmt.Errorf("the ephemeral port range starts at %d: no port below it to choose from", low)
	}
	start := base + (os.Getpid()*7919+int(portSeq.Add(1))*104729)%(low-base)
	for i := range low - base {
		port := base + (start-base+i)%(low-base)
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port between %d and %d", base, low)
}

var portSeq atomic.Int64

// process is a program the suite runs, its output in a file of work.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProcess(name, bin string, args, env []string) (*process, error) {
	log := filepath.Join(work, name+".log")
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Killed with the test binary, should it die before stopping them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cannot start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	procs = append(procs, p)
	return p, nil
}

// stop asks the process to stop, and kills it after 15 seconds.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited says whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) printTail(w *os.File, lines int) {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	all := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	_, _ = fmt.Fprintf(w, "\n----- last %d lines of %s -----\n%s\n", len(all), p.name, bytes.Join(all, []byte("\n")))
}

// exitedProcesses names the processes that have ended (none should while tests run).
func exitedProcesses() []string {
	var out []string
	for _, p := range procs {
		if p.exited() {
			out = append(out, p.name)
		}
	}
	return out
}

func ctx() context.Context { return context.Background() }
