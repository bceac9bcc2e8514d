//go:build e2e

package e2e

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	webhookPort = 9443 // webhook.port
	metricsPort = 8443 // metrics.port
	probesPort  = 8081 // health probes, not in the NetworkPolicy
)

// TestNetworkPolicy restricts the chart's NetworkPolicy as a platform team
// would (webhookFrom: the address the API server calls from; metricsFrom:
// the Prometheus Pods of a monitoring namespace) on a node that enforces
// NetworkPolicy (kube-router's network policy controller): a Pod of another
// namespace reaches neither the webhook nor the metrics port, the scraper
// reaches metrics only, and admission through the API server still works.
// It first checks, with the chart's defaults, that the same probes do
// connect, so a closed port means the policy closed it.
func TestNetworkPolicy(t *testing.T) {
	if os.Getenv("E2E_NETWORK_POLICY") == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("this node does not enforce NetworkPolicy (kube-router was not started); CI=true requires it")
		}
		t.Skip("this node does not enforce NetworkPolicy (kube-router was not built or started), so the chart's NetworkPolicy cannot be tested")
	}
	g := NewWithT(t)
	for _, ns := range []string{"e2e-netpol-other", "e2e-monitoring"} {
		g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))).To(Succeed())
		t.Cleanup(func() { _ = k8s.Delete(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	}
	other := probePod(g, "e2e-netpol-other", "probe", nil)
	scraper := probePod(g, "e2e-monitoring", "prometheus", map[string]string{"app.kubernetes.io/name": "prometheus"})
	bystander := probePod(g, "e2e-monitoring", "bystander", nil)
	entity := newEntity(g, "e2e-netpol", 1)

	// The chart's defaults: the webhook and metrics ports open to any
	// source, nothing else.
	managers := managerIPs(g)
	for _, ip := range managers {
		g.Eventually(dial).WithArguments(other, ip, webhookPort).WithTimeout(time.Minute).Should(BeTrue(), "defaults: webhook port of %s", ip)
		g.Eventually(dial).WithArguments(other, ip, metricsPort).WithTimeout(time.Minute).Should(BeTrue(), "defaults: metrics port of %s", ip)
		g.Eventually(dial).WithArguments(other, ip, probesPort).WithTimeout(time.Minute).Should(BeFalse(), "defaults: the probes port of %s is not in the policy", ip)
	}

	// Where the API server calls the webhooks from: its connections to the
	// manager Pods' webhook port, as this node's network namespace sees them.
	g.Eventually(func() error { return client.IgnoreAlreadyExists(k8s.Create(ctx(), user(entity, "first"))) }).WithTimeout(time.Minute).Should(Succeed())
	var sources []string
	g.Eventually(func() []string {
		sources = webhookClientAddresses(g, managers)
		return sources
	}).WithTimeout(30*time.Second).ShouldNot(BeEmpty(), "no connection from the API server to a webhook port")
	local := nodeAddresses(g)
	for _, s := range sources {
		g.Expect(local).To(HaveKey(s), "the API server called the webhook from %s, which is not an address of the node", s)
		t.Logf("the API server calls the webhook from %s (%s on the node; the node's InternalIP is 10.200.0.1)", s, local[s])
	}

	values := filepath.Join(t.TempDir(), "values.yaml")
	var from []string
	for _, s := range sources {
		from = append(from, fmt.Sprintf("{ipBlock: {cidr: %s/32}}", s))
	}
	g.Expect(os.WriteFile(values, fmt.Appendf(nil, `networkPolicy:
  webhookFrom: [%s]
  metricsFrom:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: e2e-monitoring}}
    podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
`, strings.Join(from, ", ")), 0o600)).To(Succeed())
	chart := filepath.Join(root, "charts", "visio-operator")
	run(t, helm, append([]string{"upgrade", release, chart, "-n", namespace, "--wait", "--timeout", "5m", "-f", values}, imageArgs()...)...)
	t.Cleanup(func() {
		run(t, helm, append([]string{"upgrade", release, chart, "-n", namespace, "--wait", "--timeout", "5m"}, imageArgs()...)...)
	})

	waitReady(g, 2)
	managers = managerIPs(g)
	for _, ip := range managers {
		g.Eventually(dial).WithArguments(other, ip, webhookPort).WithTimeout(time.Minute).Should(BeFalse(), "another namespace reaches the webhook port of %s", ip)
		g.Eventually(dial).WithArguments(other, ip, metricsPort).WithTimeout(time.Minute).Should(BeFalse(), "another namespace reaches the metrics port of %s", ip)
		g.Eventually(dial).WithArguments(bystander, ip, metricsPort).WithTimeout(time.Minute).Should(BeFalse(), "a Pod of the monitoring namespace that is not the scraper reaches metrics on %s", ip)
		g.Eventually(dial).WithArguments(scraper, ip, metricsPort).WithTimeout(time.Minute).Should(BeTrue(), "the scraper cannot reach metrics on %s", ip)
		g.Expect(dial(scraper, ip, webhookPort)).To(BeFalse(), "the scraper reaches the webhook port of %s", ip)
	}

	// Admission through the API server and the Service still works: a
	// second activation in the full pool is refused by the webhook.
	g.Eventually(func(g Gomega) {
		err := k8s.Create(ctx(), user(entity, "second"))
		g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "%v", err)
		g.Expect(err.Error()).To(ContainSubstring(`license pool "default" of entity "e2e-netpol" is full`))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(k8s.Create(ctx(), user(entity, "dry-run"), client.DryRunAll)).To(MatchError(ContainSubstring("is full")))
}

// probePod runs the probe image (hack/e2e/probe) in ns and waits until it runs.
func probePod(g Gomega, ns, name string, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name: "probe", Image: "visio.local/probe:e2e", ImagePullPolicy: corev1.PullNever,
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx(), p))).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(p), p)).To(Succeed())
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning))
		g.Expect(p.Status.PodIP).NotTo(BeEmpty())
	}).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	return p
}

// dial reports whether from's Pod can open a TCP connection to ip:port.
func dial(from *corev1.Pod, ip string, port int) (bool, error) {
	out, err := exec.Command(os.Getenv("E2E_KUBECTL"), "exec", "-n", from.Namespace, from.Name, "--",
		"/manager", "dial", net.JoinHostPort(ip, strconv.Itoa(port))).CombinedOutput()
	s := strings.TrimSpace(string(out))
	var ee *exec.ExitError
	switch {
	case err == nil && s == "open":
		return true, nil
	case errors.As(err, &ee) && strings.HasPrefix(s, "closed:"):
		return false, nil
	default: // kubectl exec itself failed: neither answer
		return false, fmt.Errorf("kubectl exec %s/%s: %v: %s", from.Namespace, from.Name, err, s)
	}
}

func managerIPs(g Gomega) []string {
	pods := &corev1.PodList{}
	g.Expect(k8s.List(ctx(), pods, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/name": "visio-operator"})).To(Succeed())
	var ips []string
	for _, p := range pods.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" && ready {
			ips = append(ips, p.Status.PodIP)
		}
	}
	g.Expect(ips).NotTo(BeEmpty())
	return ips
}

// webhookClientAddresses lists the local addresses of the established TCP
// connections of this network namespace (the node's, where the API server
// runs) to the webhook port of the given Pods.
func webhookClientAddresses(g Gomega, podIPs []string) []string {
	want := map[string]bool{}
	for _, ip := range podIPs {
		want[net.JoinHostPort(ip, strconv.Itoa(webhookPort))] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		file, err := os.Open(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
		s := bufio.NewScanner(file)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) < 4 || fields[3] != "01" { // ESTABLISHED
				continue
			}
			local, remote := procAddr(fields[1]), procAddr(fields[2])
			if local == "" || !want[remote] {
				continue
			}
			host, _, _ := net.SplitHostPort(local)
			if !seen[host] {
				seen[host] = true
				out = append(out, host)
			}
		}
		_ = file.Close()
	}
	return out
}

// procAddr decodes an address of /proc/net/tcp{,6} ("0100007F:1F90") into
// "127.0.0.1:8080"; IPv4-mapped IPv6 addresses come out as IPv4.
func procAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || (len(raw) != 4 && len(raw) != 16) {
		return ""
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 { // each 32-bit word is in host (little-endian) order
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10))
}

// nodeAddresses maps the addresses of this network namespace (the node's)
// to their interface.
func nodeAddresses(g Gomega) map[string]string {
	ifs, err := net.Interfaces()
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]string{}
	for _, i := range ifs {
		addrs, err := i.Addrs()
		g.Expect(err).NotTo(HaveOccurred())
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				out[n.IP.String()] = i.Name
			}
		}
	}
	return out
}
