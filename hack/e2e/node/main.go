// Command node runs a single-node Kubernetes cluster (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy)
// and a command against it, then exits with the command's status.
//
// hack/e2e/e2e.sh starts it inside network, mount and PID namespaces of its
// own, with / bound so that /var/lib, /var/log and /run are private: nothing
// it does reaches the host's network, netfilter rules or paths, and every
// process it starts dies with the PID namespace. The settings follow what
// was found to work on the project's machines (cgroup v1 with cgroupfs, no
// CAP_SYS_RESOURCE, no cluster DNS).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	nodeName    = "visio-e2e"
	nodeIP      = "10.200.0.1"
	serviceCIDR = "10.96.0.0/16"
	clusterCIDR = "10.244.0.0/16"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

var (
	work, cpDir, nodeDir, pauseImage, kubeRouter string
	images                                       stringList
)

func main() {
	flag.StringVar(&work, "work", "", "Work directory (absolute).")
	flag.StringVar(&cpDir, "controlplane", "", "Directory of etcd, kube-apiserver, kube-controller-manager, kubectl.")
	flag.StringVar(&nodeDir, "node", "", "Directory of kubelet, kube-scheduler, kube-proxy.")
	flag.StringVar(&pauseImage, "pause-image", "", "Reference of the sandbox image (in one of the -image tarballs).")
	flag.Var(&images, "image", "Image tarball to import into containerd (repeatable).")
	flag.StringVar(&kubeRouter, "kube-router", "", "kube-router binary: when set, its network policy controller enforces NetworkPolicy (the bridge CNI plugin does not).")
	flag.Parse()
	os.Exit(run(flag.Args()))
}

func logf(format string, a ...any) {
	fmt.Printf("node: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func run(command []string) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	start := time.Now()
	stopMem := sampleMemory()
	if err := up(ctx, start); err != nil {
		logf("cannot bring the node up: %v (logs in %s)", err, filepath.Join(work, "logs"))
		stopMem()
		return 1
	}
	logf("node up in %s; running %s", time.Since(start).Round(time.Second), strings.Join(command, " "))
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+filepath.Join(work, "admin.kubeconfig"),
		"E2E_KUBECTL="+filepath.Join(cpDir, "kubectl"),
		"E2E_WORK="+work,
		"E2E_CONTAINERD_ADDRESS="+filepath.Join(work, "containerd", "containerd.sock"))
	if kubeRouter != "" {
		cmd.Env = append(cmd.Env, "E2E_NETWORK_POLICY=kube-router")
	}
	err := cmd.Run()
	stopMem()
	logf("total %s", time.Since(start).Round(time.Second))
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		logf("%v", err)
		return 1
	}
	return 0
}

func up(ctx context.Context, start time.Time) error {
	pki := filepath.Join(work, "pki")
	for _, d := range []string{pki, filepath.Join(work, "logs"), filepath.Join(work, "cni", "net.d"), filepath.Join(work, "containerd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := writePKI(pki); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := writeConfigs(); err != nil {
		return err
	}
	p := func(f string) string { return filepath.Join(pki, f) }

	if err := spawn(ctx, "etcd", filepath.Join(cpDir, "etcd"), "--data-dir="+filepath.Join(work, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=default=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	if err := spawn(ctx, "containerd", "containerd", "--config="+filepath.Join(work, "containerd", "config.toml")); err != nil {
		return err
	}
	if err := spawn(ctx, "kube-apiserver", filepath.Join(cpDir, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379", "--bind-address=0.0.0.0", "--secure-port=6443", "--advertise-address="+nodeIP,
		"--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"), "--client-ca-file="+p("ca.crt"),
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local", "--service-cluster-ip-range="+serviceCIDR,
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
		"--kubelet-client-certificate="+p("apiserver-kubelet-client.crt"), "--kubelet-client-key="+p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+p("ca.crt"), "--kubelet-preferred-address-types=InternalIP",
		"--enable-aggregator-routing=true",
		"--requestheader-client-ca-file="+p("front-proxy-ca.crt"), "--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+p("front-proxy-client.crt"), "--proxy-client-key-file="+p("front-proxy-client.key")); err != nil {
		return err
	}
	if err := waitFor(ctx, "containerd", 60*time.Second, func() error {
		_, err := os.Stat(filepath.Join(work, "containerd", "containerd.sock"))
		return err
	}); err != nil {
		return err
	}
	for _, img := range images {
		// Exactly what `kind load image-archive` runs on a kind node
		// (sigs.k8s.io/kind pkg/cluster/nodeutils LoadImageArchive): the
		// archive on stdin, all platforms, digest references, the configured
		// snapshotter. The Pods then run from what this imported.
		f, err := os.Open(img)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "ctr", "--address", filepath.Join(work, "containerd", "containerd.sock"),
			"--namespace=k8s.io", "images", "import", "--all-platforms", "--digests", "--snapshotter=overlayfs", "-")
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %v\n%s", img, err, out)
		}
	}
	logf("containerd up and %d images imported (%s)", len(images), time.Since(start).Round(time.Second))
	if err := waitFor(ctx, "kube-apiserver", 120*time.Second, func() error { return kubectl(ctx, "get", "--raw=/readyz") }); err != nil {
		return err
	}
	logf("kube-apiserver ready (%s)", time.Since(start).Round(time.Second))
	kc := func(n string) string { return filepath.Join(work, n+".kubeconfig") }
	if err := spawn(ctx, "kube-controller-manager", filepath.Join(cpDir, "kube-controller-manager"),
		"--kubeconfig="+kc("controller-manager"), "--authentication-kubeconfig="+kc("controller-manager"),
		"--authorization-kubeconfig="+kc("controller-manager"), "--bind-address=127.0.0.1", "--leader-elect=false",
		"--allocate-node-cidrs", "--cluster-cidr="+clusterCIDR, "--node-cidr-mask-size=24", "--service-cluster-ip-range="+serviceCIDR,
		"--service-account-private-key-file="+p("sa.key"), "--root-ca-file="+p("ca.crt"), "--use-service-account-credentials",
		"--cluster-signing-cert-file="+p("ca.crt"), "--cluster-signing-key-file="+p("ca.key")); err != nil {
		return err
	}
	if err := spawn(ctx, "kube-scheduler", filepath.Join(nodeDir, "kube-scheduler"),
		"--kubeconfig="+kc("scheduler"), "--authentication-kubeconfig="+kc("scheduler"), "--authorization-kubeconfig="+kc("scheduler"),
		"--bind-address=127.0.0.1", "--leader-elect=false"); err != nil {
		return err
	}
	if err := spawn(ctx, "kubelet", filepath.Join(nodeDir, "kubelet"),
		"--config="+filepath.Join(work, "kubelet.yaml"), "--kubeconfig="+kc("kubelet"),
		"--node-ip="+nodeIP, "--hostname-override="+nodeName, "--v=1"); err != nil {
		return err
	}
	if err := spawn(ctx, "kube-proxy", filepath.Join(nodeDir, "kube-proxy"),
		"--kubeconfig="+kc("kube-proxy"), "--proxy-mode=iptables", "--cluster-cidr="+clusterCIDR,
		"--hostname-override="+nodeName, "--bind-address="+nodeIP, "--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0", "--v=1"); err != nil {
		return err
	}
	if err := waitFor(ctx, "node Ready", 180*time.Second, func() error {
		return kubectl(ctx, "wait", "--for=condition=Ready", "node/"+nodeName, "--timeout=5s")
	}); err != nil {
		return err
	}
	logf("node Ready (%s)", time.Since(start).Round(time.Second))
	if kubeRouter != "" {
		if err := startNetworkPolicy(ctx); err != nil {
			return err
		}
		logf("kube-router's network policy controller enforcing (%s)", time.Since(start).Round(time.Second))
	}
	return waitFor(ctx, "default ServiceAccount", 120*time.Second, func() error {
		return kubectl(ctx, "get", "serviceaccount", "default", "-n", "default")
	})
}

// startNetworkPolicy runs kube-router's network policy controller alone: no
// BGP routing, no service proxy (kube-proxy does that), no CNI config of its
// own. It programs iptables and ipset in the node's network namespace only
// and watches Pods, Namespaces and NetworkPolicies with the admin
// credentials (a test cluster). Ready once its top-level chains are hooked
// into FORWARD, where bridged Pod-to-Pod traffic passes
// (bridge-nf-call-iptables is set in hack/e2e/e2e.sh).
func startNetworkPolicy(ctx context.Context) error {
	if err := spawn(ctx, "kube-router", kubeRouter,
		"--kubeconfig="+filepath.Join(work, "admin.kubeconfig"), "--hostname-override="+nodeName,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
		"--service-cluster-ip-range="+serviceCIDR, "--health-port=0", "--metrics-port=0", "--v=1"); err != nil {
		return err
	}
	return waitFor(ctx, "kube-router's network policy chains", 120*time.Second, func() error {
		for _, chain := range []string{"KUBE-ROUTER-FORWARD", "KUBE-NWPLCY-DEFAULT"} {
			if out, err := exec.CommandContext(ctx, "iptables", "-w", "-S", chain).CombinedOutput(); err != nil {
				return fmt.Errorf("iptables -S %s: %v: %s", chain, err, strings.TrimSpace(string(out)))
			}
		}
		if out, err := exec.CommandContext(ctx, "iptables", "-w", "-S", "FORWARD").CombinedOutput(); err != nil || !strings.Contains(string(out), "KUBE-ROUTER-FORWARD") {
			return fmt.Errorf("FORWARD does not jump to KUBE-ROUTER-FORWARD yet: %v %s", err, out)
		}
		return nil
	})
}

func kubectl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(cpDir, "kubectl"), append([]string{"--kubeconfig=" + filepath.Join(work, "admin.kubeconfig")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func waitFor(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var procs sync.WaitGroup

// spawn starts a component with its output in logs/<name>.log. It runs until
// the PID namespace ends.
func spawn(ctx context.Context, name, bin string, args ...string) error {
	f, err := os.Create(filepath.Join(work, "logs", name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", name, err)
	}
	procs.Add(1)
	go func() {
		defer procs.Done()
		err := cmd.Wait()
		if ctx.Err() == nil {
			logf("%s exited: %v (see %s)", name, err, f.Name())
		}
	}()
	return nil
}

// sampleMemory records the peak of the summed resident memory of every
// process in the PID namespace (the node and what runs on it) and prints it
// when stopped.
func sampleMemory() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var peak int64
		var peakBy map[string]int64
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			total, by := rss()
			if total > peak {
				peak, peakBy = total, by
			}
			select {
			case <-done:
				type kv struct {
					k string
					v int64
				}
				var l []kv
				for k, v := range peakBy {
					l = append(l, kv{k, v})
				}
				sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
				var parts []string
				for _, e := range l {
					if e.v >= 10<<10 {
						parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v>>10))
					}
				}
				logf("peak memory (RSS, MiB): %d: %s", peak>>10, strings.Join(parts, ", "))
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
			wg.Wait()
		}
	}
}

// rss sums VmRSS (KiB) over /proc, by command name.
func rss() (int64, map[string]int64) {
	by := map[string]int64{}
	var total int64
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var name string
		s := bufio.NewScanner(f)
		for s.Scan() {
			line := s.Text()
			if v, ok := strings.CutPrefix(line, "Name:"); ok {
				name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				by[name] += kb
				total += kb
			}
		}
		_ = f.Close()
	}
	return total, by
}
