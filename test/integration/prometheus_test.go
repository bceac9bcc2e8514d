package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
	promtest "visio.dev/operator/test/prometheus"
)

// TestPrometheusScrapesTheManager runs a real Prometheus against the manager's
// metrics, served as cmd/main serves them in a cluster (HTTPS, callers
// authenticated and authorised by the API server), with the scrape settings of
// the chart's ServiceMonitor and the token of a service account bound to the
// chart's metrics-reader ClusterRole. A query of the dashboard then returns
// the entity's licenses.
func TestPrometheusScrapesTheManager(t *testing.T) {
	g := NewWithT(t)
	prometheus := promtest.Binary(t, "prometheus")
	chart := renderChart(t, g, "--set", "metrics.serviceMonitor.enabled=true")

	// The chart's reader role, bound to a service account of "monitoring".
	var role rbacv1.ClusterRole
	g.Expect(yaml.Unmarshal([]byte(chart["ClusterRole/visio-operator-metrics-reader"]), &role)).To(Succeed())
	role.Name = "test-" + role.Name
	g.Expect(k8s.Create(ctx(), &role)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), &role) })
	g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}))).To(Succeed())
	for _, name := range []string{"prometheus", "stranger"} {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: name}}
		g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), sa))).To(Succeed())
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-metrics-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: "monitoring"}}}
	g.Expect(k8s.Create(ctx(), binding)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), binding) })
	token := func(name string) string {
		cs, err := kubernetes.NewForConfig(cfg)
		g.Expect(err).NotTo(HaveOccurred())
		tr, err := cs.CoreV1().ServiceAccounts("monitoring").CreateToken(ctx(), name,
			&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		return tr.Status.Token
	}

	// The metrics endpoint, as the manager serves it, on the registry the
	// shared manager records into.
	addr := freeAddr(g)
	srv, err := metricsserver.NewServer(metricsserver.Options{BindAddress: addr, SecureServing: true,
		FilterProvider: filters.WithAuthenticationAndAuthorization}, rest.CopyConfig(managerCfg), mustHTTPClient(g))
	g.Expect(err).NotTo(HaveOccurred())
	sctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go func() { _ = srv.Start(sctx) }()

	// Only the bound service account may read it.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed, loopback
	status := func(bearer string) int {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := insecure.Do(req)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	readerToken := token("prometheus")
	g.Eventually(func() int { return status(readerToken) }).WithTimeout(30 * time.Second).Should(Equal(http.StatusOK))
	g.Expect(status("")).To(Equal(http.StatusUnauthorized))
	g.Expect(status(token("stranger"))).To(Equal(http.StatusForbidden))

	// Prometheus, configured as the chart's ServiceMonitor says.
	var sm struct {
		Spec struct {
			Endpoints []struct {
				Path, Scheme string
				TLSConfig    struct {
					InsecureSkipVerify bool `json:"insecureSkipVerify"`
				} `json:"tlsConfig"`
				Relabelings []struct {
					TargetLabel string `json:"targetLabel"`
					Replacement string `json:"replacement"`
				} `json:"relabelings"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	g.Expect(yaml.Unmarshal([]byte(chart["ServiceMonitor/visio-operator"]), &sm)).To(Succeed())
	g.Expect(sm.Spec.Endpoints).To(HaveLen(1))
	ep := sm.Spec.Endpoints[0]
	job := ""
	for _, r := range ep.Relabelings {
		if r.TargetLabel == "job" {
			job = r.Replacement
		}
	}
	g.Expect(job).To(Equal("visio-operator"), "the alerts select job=\"visio-operator\"")
	dir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(dir, "token"), []byte(readerToken), 0o600)).To(Succeed())
	config := map[string]any{
		"global": map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"scrape_configs": []any{map[string]any{
			"job_name": job, "scheme": ep.Scheme, "metrics_path": ep.Path,
			"authorization":   map[string]any{"credentials_file": filepath.Join(dir, "token")},
			"tls_config":      map[string]any{"insecure_skip_verify": ep.TLSConfig.InsecureSkipVerify},
			"static_configs":  []any{map[string]any{"targets": []string{addr}}},
			"scrape_interval": "1s",
		}},
	}
	b, err := yaml.Marshal(config)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "prometheus.yml"), b, 0o600)).To(Succeed())
	web := freeAddr(g)
	cmd := exec.Command(prometheus, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	logs, err := os.Create(filepath.Join(dir, "prometheus.log"))
	g.Expect(err).NotTo(HaveOccurred())
	cmd.Stdout, cmd.Stderr = logs, logs
	g.Expect(cmd.Start()).To(Succeed())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", out)
		}
	})

	// An entity with 3 of 4 licenses used.
	e, ns := newEntity(t, g)
	newPool(g, ns, "staff", 4, v1.EnforcementDeny)
	for i := range 3 {
		u := newUser(ns, fmt.Sprintf("user-%d", i), true)
		u.Spec.LicensePool = "staff"
		g.Expect(k8s.Create(ctx(), u)).To(Succeed())
	}

	query := func(g Gomega, q string) map[string]float64 {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		var r struct {
			Status string
			Error  string
			Data   struct {
				Result []struct {
					Metric map[string]string
					Value  [2]any
				}
			}
		}
		g.Expect(json.NewDecoder(resp.Body).Decode(&r)).To(Succeed())
		g.Expect(r.Status).To(Equal("success"), r.Error)
		out := map[string]float64{}
		for _, s := range r.Data.Result {
			v, err := strconv.ParseFloat(s.Value[1].(string), 64)
			g.Expect(err).NotTo(HaveOccurred())
			out[s.Metric["entity"]] = v
		}
		return out
	}
	g.Eventually(func(g Gomega) {
		g.Expect(query(g, `up{job="visio-operator"}`)).To(Equal(map[string]float64{"": 1}), "the scrape is authorised")
	}).WithTimeout(60 * time.Second).Should(Succeed())

	// The dashboard's first panel, for this entity: 3 used, 4 owned.
	exprs := dashboardQueries(g, "Licenses used and capacity per entity")
	g.Expect(exprs).To(HaveLen(2))
	vars := strings.NewReplacer("$entity", e.Name, "$pool", ".*")
	g.Eventually(func(g Gomega) {
		g.Expect(query(g, vars.Replace(exprs[0]))).To(Equal(map[string]float64{e.Name: 3}), "used")
		g.Expect(query(g, vars.Replace(exprs[1]))).To(Equal(map[string]float64{e.Name: 4}), "capacity")
	}).WithTimeout(60 * time.Second).Should(Succeed())
	nearest := dashboardQueries(g, "Entities nearest to full")
	g.Expect(query(g, vars.Replace(nearest[0]))).To(HaveKeyWithValue(e.Name, 0.75))
}

// dashboardQueries returns the queries of the dashboard's panel titled title.
func dashboardQueries(g Gomega, title string) []string {
	b, err := os.ReadFile(filepath.Join(root, "charts", "visio-operator", "files", "grafana-dashboard.json"))
	g.Expect(err).NotTo(HaveOccurred())
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	g.Expect(json.Unmarshal(b, &d)).To(Succeed())
	var out []string
	for _, p := range d.Panels {
		if p.Title == title {
			for _, t := range p.Targets {
				out = append(out, t.Expr)
			}
		}
	}
	return out
}

// renderChart renders the chart with helm and returns its objects by
// "Kind/name".
func renderChart(t *testing.T, g Gomega, args ...string) map[string]string {
	t.Helper()
	helm := os.Getenv("HELM")
	g.Expect(helm).NotTo(BeEmpty(), "HELM is not set: run the tests with `make test`, which installs helm")
	out, err := exec.Command(helm, append([]string{"template", "visio", filepath.Join(root, "charts", "visio-operator"),
		"--namespace", "visio-system"}, args...)...).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))
	objs := map[string]string{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if yaml.Unmarshal([]byte(doc), &meta) == nil && meta.Kind != "" {
			objs[meta.Kind+"/"+meta.Metadata.Name] = doc
		}
	}
	return objs
}

func freeAddr(g Gomega) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func mustHTTPClient(g Gomega) *http.Client {
	c, err := rest.HTTPClientFor(rest.CopyConfig(managerCfg))
	g.Expect(err).NotTo(HaveOccurred())
	return c
}
