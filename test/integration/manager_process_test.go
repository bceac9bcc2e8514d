package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// managerProcess is the manager binary (cmd/) run as a process of its own
// against the test control plane, as the manager's service account and
// without its webhooks. What it measures (memory, CPU, requests) is the
// manager's alone, read from its own metrics endpoint, where the manager run
// inside the test process shares all of that with the test.
type managerProcess struct {
	cmd     *exec.Cmd
	metrics string
	readyz  string
	pprof   string
	done    chan error
	// stopOnce: stopped by the bench, then again by the test's cleanup.
	stopOnce sync.Once
}

// buildManager builds cmd/ and returns the binary's path.
func buildManager(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("cannot build the manager: %v\n%s", err, out)
	}
	return bin
}

// startManagerProcess runs the manager binary bin with the test options'
// flags and extra; it is stopped (SIGINT) when tb ends.
func startManagerProcess(tb testing.TB, bin string, extra ...string) *managerProcess {
	tb.Helper()
	dir := tb.TempDir()
	user, err := testEnv.AddUser(envtest.User{Name: managerServiceAccount, Groups: []string{"system:serviceaccounts", "system:authenticated"}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		tb.Fatal(err)
	}
	kubeconfigFile := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		tb.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	probeAddr := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	opts := testOptions()
	args := append([]string{
		"--enable-webhooks=false", "--leader-elect=false",
		"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address=" + probeAddr, "--pprof-bind-address=" + pprofAddr,
		"--platform-entity=" + opts.PlatformEntity,
		"--platform-admin-groups=" + strings.Join(opts.PlatformAdminGroups, ","),
		"--license-reservation-ttl=" + opts.ReservationTTL.String(),
		fmt.Sprintf("--max-concurrent-reconciles=%d", opts.MaxConcurrentReconciles),
		fmt.Sprintf("--numeric-id-range=%d-%d", opts.NumericIDs.Min, opts.NumericIDs.Max),
		"--join-base-url=" + opts.JoinBaseURL, "--sip-domain=" + opts.SIPDomain,
		"--drift-check-interval=" + opts.DriftCheckInterval.String(),
		"--zap-log-level=error",
	}, extra...)
	p := &managerProcess{cmd: exec.Command(bin, args...), metrics: "http://" + metricsAddr + "/metrics",
		readyz: "http://" + probeAddr + "/readyz", pprof: "http://" + pprofAddr + "/debug/pprof/", done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigFile)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	tb.Cleanup(p.stop)
	for range 300 {
		if _, err := p.gather(); err == nil {
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("the manager process serves no metrics at %s", p.metrics)
	return nil
}

// ready reports whether the process says it is ready: its caches synced.
func (p *managerProcess) ready() bool {
	resp, err := http.Get(p.readyz)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// heapProfile collects the process's garbage, then writes its heap profile
// to path.
func (p *managerProcess) heapProfile(path string) error {
	resp, err := http.Get(p.pprof + "heap?gc=1")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", p.pprof, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// stop ends the process (SIGINT, as a terminal would; the manager stops the
// same way on SIGTERM), and waits for it.
func (p *managerProcess) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		var err error
		select {
		case err = <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			err = <-p.done
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "manager process: %v\n", err)
		}
	})
}

// gather scrapes the process's metrics.
func (p *managerProcess) gather() ([]*dto.MetricFamily, error) {
	resp, err := http.Get(p.metrics)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", p.metrics, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads a Prometheus metrics text.
func parseMetrics(r io.Reader) ([]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := make([]*dto.MetricFamily, 0, len(families))
	for _, f := range families {
		out = append(out, f)
	}
	return out, nil
}

// gatherer is the process's metrics as a prometheus.Gatherer.
func (p *managerProcess) gatherer() prometheus.Gatherer { return prometheus.GathererFunc(p.gather) }

// sample is the sum of a family's samples (counters and gauges) whose labels
// include every given label.
func sample(g prometheus.Gatherer, name string, labels map[string]string) float64 {
	families, err := g.Gather()
	if err != nil {
		return 0
	}
	return sampleIn(families, name, labels)
}

// sampleIn is sample over families already gathered.
func sampleIn(families []*dto.MetricFamily, name string, labels map[string]string) float64 {
	var total float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			}
		}
	}
	return total
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(want)
}

// writeRequests is how many writes the process's clients have sent to the
// API server (client-go's request counter, by method).
func writeRequests(g prometheus.Gatherer) float64 {
	var n float64
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		n += sample(g, "rest_client_requests_total", map[string]string{"method": method})
	}
	return n
}
