package integration

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

// TestChartMonitoring checks the chart's monitoring objects: off by default
// but for the scraper's ClusterRole; when enabled, the PrometheusRule carries
// the promtool-tested rule file (without the leader alert when leader election
// is off) and the dashboard ConfigMap carries the checked dashboard, labelled
// for Grafana's sidecar.
func TestChartMonitoring(t *testing.T) {
	g := NewWithT(t)
	def := renderChart(t, g)
	g.Expect(def).To(HaveKey("ClusterRole/visio-operator-metrics-reader"))
	for _, k := range []string{"ServiceMonitor/visio-operator", "PrometheusRule/visio-operator", "ConfigMap/visio-operator-dashboard",
		"ClusterRoleBinding/visio-operator-metrics-reader"} {
		g.Expect(def).NotTo(HaveKey(k), "%s is optional and off by default", k)
	}

	on := renderChart(t, g, "--set", "metrics.serviceMonitor.enabled=true", "--set", "prometheusRules.enabled=true",
		"--set", "grafanaDashboard.enabled=true", "--set", "metrics.readerSubjects[0].kind=ServiceAccount",
		"--set", "metrics.readerSubjects[0].name=prometheus", "--set", "metrics.readerSubjects[0].namespace=monitoring")
	g.Expect(on).To(HaveKey("ServiceMonitor/visio-operator"))
	g.Expect(on).To(HaveKey("ClusterRoleBinding/visio-operator-metrics-reader"))

	var rule struct{ Spec map[string]any }
	g.Expect(yaml.Unmarshal([]byte(on["PrometheusRule/visio-operator"]), &rule)).To(Succeed())
	file, err := os.ReadFile(filepath.Join(root, "charts", "visio-operator", "files", "prometheus-rules.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var want map[string]any
	g.Expect(yaml.Unmarshal(file, &want)).To(Succeed())
	g.Expect(rule.Spec).To(Equal(want), "the PrometheusRule is the tested rule file")

	noLeader := renderChart(t, g, "--set", "prometheusRules.enabled=true", "--set", "leaderElection=false")
	g.Expect(noLeader["PrometheusRule/visio-operator"]).NotTo(ContainSubstring("VisioOperatorWithoutLeader"))
	g.Expect(noLeader["PrometheusRule/visio-operator"]).To(ContainSubstring("VisioOperatorDown"))

	var cm struct {
		Metadata struct{ Labels map[string]string }
		Data     map[string]string
	}
	g.Expect(yaml.Unmarshal([]byte(on["ConfigMap/visio-operator-dashboard"]), &cm)).To(Succeed())
	g.Expect(cm.Metadata.Labels).To(HaveKeyWithValue("grafana_dashboard", "1"))
	dash, err := os.ReadFile(filepath.Join(root, "charts", "visio-operator", "files", "grafana-dashboard.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cm.Data).To(HaveKeyWithValue("visio-operator.json", string(dash)))
}
