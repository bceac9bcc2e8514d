package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func writePKI(dir string) error {
	c, err := newCA(dir, "ca")
	if err != nil {
		return err
	}
	fp, err := newCA(dir, "front-proxy-ca")
	if err != nil {
		return err
	}
	type cert struct {
		name, cn string
		orgs     []string
		client   bool
		hosts    []string
	}
	for _, x := range []cert{
		{"apiserver", "kube-apiserver", nil, false, []string{"127.0.0.1", nodeIP, "10.96.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{"admin", "admin", []string{"system:masters"}, true, nil},
		{"kubelet-client", "system:node:" + nodeName, []string{"system:nodes"}, true, nil},
		{"kubelet", nodeName, nil, false, []string{nodeIP, nodeName, "127.0.0.1"}},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, true, nil},
		{"controller-manager", "system:kube-controller-manager", nil, true, nil},
		{"scheduler", "system:kube-scheduler", nil, true, nil},
		{"kube-proxy", "system:kube-proxy", []string{"system:node-proxier"}, true, nil},
	} {
		if err := c.issue(dir, x.name, x.cn, x.orgs, x.client, x.hosts...); err != nil {
			return err
		}
	}
	if err := fp.issue(dir, "front-proxy-client", "front-proxy-client", nil, true); err != nil {
		return err
	}
	return serviceAccountKey(dir)
}

func writeConfigs() error {
	pki := filepath.Join(work, "pki")
	for name, cert := range map[string]string{
		"admin": "admin", "kubelet": "kubelet-client", "controller-manager": "controller-manager",
		"scheduler": "scheduler", "kube-proxy": "kube-proxy",
	} {
		kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: %q}
users:
- name: %s
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: e2e
  context: {cluster: e2e, user: %s}
current-context: e2e
`, filepath.Join(pki, "ca.crt"), name, filepath.Join(pki, cert+".crt"), filepath.Join(pki, cert+".key"), name)
		if err := os.WriteFile(filepath.Join(work, name+".kubeconfig"), []byte(kc), 0o600); err != nil {
			return err
		}
	}
	ctrd := filepath.Join(work, "containerd")
	files := map[string]string{
		filepath.Join(ctrd, "config.toml"): `version = 2
root = "` + filepath.Join(ctrd, "root") + `"
state = "` + filepath.Join(ctrd, "state") + `"
[grpc]
  address = "` + filepath.Join(ctrd, "containerd.sock") + `"
[ttrpc]
  address = "` + filepath.Join(ctrd, "containerd.sock.ttrpc") + `"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "` + pauseImage + `"
  # No CAP_SYS_RESOURCE on these machines: never lower oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "` + filepath.Join(work, "cni", "net.d") + `"
`,
		filepath.Join(work, "cni", "net.d", "10-bridge.conflist"): `{
  "cniVersion": "1.0.0",
  "name": "visio-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true, "mtu": 1400,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "` + filepath.Join(work, "cni", "ipam") + `"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`,
		filepath.Join(work, "kubelet.yaml"): `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 here, and systemd is not PID 1.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://` + filepath.Join(ctrd, "containerd.sock") + `
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "` + filepath.Join(pki, "ca.crt") + `"}
authorization: {mode: Webhook}
tlsCertFile: "` + filepath.Join(pki, "kubelet.crt") + `"
tlsPrivateKeyFile: "` + filepath.Join(pki, "kubelet.key") + `"
failSwapOn: false
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
`,
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(strings.TrimLeft(content, "\n")), 0o600); err != nil {
			return err
		}
	}
	return nil
}
