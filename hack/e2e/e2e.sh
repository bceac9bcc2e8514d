#!/usr/bin/env bash
# make test-e2e: the operator on a real single-node cluster.
#
# Builds the node (kubelet, kube-scheduler, kube-proxy v1.37.0, from the Go
# module proxy like the control plane; kube-router's network policy
# controller, so that NetworkPolicy is enforced), the operator image, a pause
# image and a probe image, installs containerd, runc, the CNI plugins,
# iptables and ipset from Debian when missing, then
# runs hack/e2e/node (the cluster) and the tests of test/e2e against it, all
# inside network, mount and PID namespaces of their own: the host's links,
# netfilter rules, sysctls and paths (/var/lib/kubelet, /var/log/pods, /run)
# are untouched, and every process ends with the namespace. What outlives the
# namespaces (the kubelet's cgroups, the work directory) is removed here.
#
# Runs when it can (root on Linux); says why and succeeds when it cannot,
# except with CI=true, where a skip is a failure.
# Environment: HELM (helm binary), E2E_KEEP=1 keeps the work directory,
# E2E_TESTARGS (test binary flags, e.g. -test.run 'TestInstall|TestSamples'), E2E_CONTROLPLANE
# and E2E_NODE (directories of prebuilt binaries, instead of hack/controlplane.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
start=$(date +%s)

skip() {
	if [[ "${CI:-}" == true ]]; then
		echo "e2e: cannot run the real-node tests: $1 (CI=true: this is a failure)" >&2
		exit 1
	fi
	echo "e2e: SKIPPED the real-node tests: $1"
	exit 0
}
[[ "$(uname -s)" == Linux ]] || skip "they need Linux (namespaces, cgroups, containerd)"
[[ "$(id -u)" == 0 ]] || skip "they need root (network, mount and PID namespaces, containerd, kubelet)"
command -v unshare >/dev/null || skip "unshare (util-linux) is missing"
unshare --net --mount --pid --fork true 2>/dev/null || skip "this machine does not allow new network, mount and PID namespaces"
[[ -d /sys/fs/cgroup ]] || skip "no /sys/fs/cgroup"

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v ipset >/dev/null || missing+=(ipset) # kube-router's network policy controller
if ((${#missing[@]})); then
	command -v apt-get >/dev/null || skip "${missing[*]} missing and no apt-get to install them"
	echo "e2e: installing ${missing[*]} from Debian"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

helm=${HELM:-}
[[ -x "$helm" ]] || { echo "e2e: HELM is not set to a helm binary (make test-e2e sets it)" >&2; exit 1; }
cp=${E2E_CONTROLPLANE:-$(hack/controlplane.sh)}
node=${E2E_NODE:-$(hack/controlplane.sh node)}
# NetworkPolicy enforcement (the bridge CNI plugin has none): kube-router's
# network policy controller. Without it the NetworkPolicy test skips, which
# CI=true does not accept.
kube_router=()
if kr=$(hack/e2e/kube-router.sh); then
	kube_router=(-kube-router "$kr/kube-router")
elif [[ "${CI:-}" == true ]]; then
	echo "e2e: cannot build kube-router (CI=true: NetworkPolicy must be enforced)" >&2
	exit 1
else
	echo "e2e: cannot build kube-router: NetworkPolicy will not be enforced and its test skips" >&2
fi
built=$(date +%s)

cache=${VISIO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/visio-operator}
mkdir -p "$cache/e2e"
# One real node at a time on a machine: the kubelet's cgroups (/kubepods,
# cgroup v1 is not namespaced) would be shared, and one run's cleanup would
# remove the other's.
exec 9>"$cache/e2e/lock"
flock 9 || { echo "e2e: cannot lock $cache/e2e/lock" >&2; exit 1; }
work=$(mktemp -d "$cache/e2e/run.XXXXXX")
cleanup() {
	# The PID namespace is gone: every process in it was killed. The kubelet's
	# cgroups (cgroup v1 is not namespaced) and the work directory remain.
	local d i
	for i in {1..20}; do # the killed processes leave their cgroups within moments
		for d in /sys/fs/cgroup/*/kubepods; do
			[[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
		done
		compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null || break
		sleep 0.5
	done
	compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null && echo "e2e: could not remove the cgroups /sys/fs/cgroup/*/kubepods" >&2
	mkdir -p bin/e2e-logs && cp -r "$work/logs/." bin/e2e-logs/ 2>/dev/null || true
	if [[ "${E2E_KEEP:-}" != 1 ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# The operator image (make image), a pause image built the same way, the node
# program, make run's program and the test binary: everything is built here, outside the network
# namespace, which has no route out.
version=e2e-$(git rev-parse --short HEAD)
image=ghcr.io/visio-dev/visio-operator:$version
make -s image VERSION="$version" IMG="$image" >/dev/null
for img in pause probe; do
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/$img" ./hack/e2e/$img
	go run ./hack/image -binary "$work/$img" -tag visio.local/$img:e2e -version e2e -revision "$version" \
		-created 1970-01-01T00:00:00Z -o "$work/$img.tar" >/dev/null
done
go build -o "$work/node" ./hack/e2e/node
go build -o "$work/localrun" ./hack/localrun # make run's program; it runs the image's manager binary
go test -c -tags e2e -o "$work/e2e.test" ./test/e2e
images=$(date +%s)
echo "e2e: binaries ready in $((built - start))s, images and tests built in $((images - built))s"

mkdir -p "$work/var-lib" "$work/var-log"
# Inside the namespaces: a loopback-only network with the node's address on
# lo and a blackhole default route (nothing can leave), private /run,
# /var/lib and /var/log, and bash as PID 1, which reaps the orphans that
# containerd shims leave. When it exits, the kernel kills the rest.
export HELM="$helm" E2E_ROOT=$PWD E2E_IMAGE_REPOSITORY=${image%:*} E2E_IMAGE_TAG=$version \
	E2E_LOCALRUN=$work/localrun E2E_MANAGER=$PWD/bin/linux/manager
# E2E_TESTARGS is split as the shell would (so -test.run 'A|B' keeps its
# quotes' meaning rather than matching names with quotes in them).
eval "testargs=(${E2E_TESTARGS:-})"
set +e
unshare --net --mount --pid --fork --kill-child --mount-proc bash -c '
	set -e
	ip link set lo up
	ip addr add 10.200.0.1/32 dev lo
	ip route add blackhole default
	sysctl -qw net.ipv4.ip_forward=1
	[[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]] && sysctl -qw net.bridge.bridge-nf-call-iptables=1 || true
	mount -t tmpfs tmpfs /run
	mount --bind "$1/var-lib" /var/lib
	mount --bind "$1/var-log" /var/log
	"$1/node" -work "$1" -controlplane "$2" -node "$3" -pause-image visio.local/pause:e2e \
		-image "$4" -image "$1/pause.tar" -image "$1/probe.tar" ${5} -- "$1/e2e.test" -test.v -test.timeout 30m "${@:6}"
' e2e "$work" "$cp" "$node" "$PWD/bin/visio-operator-image.tar" "${kube_router[*]}" "${testargs[@]}" \
	2>&1 | sed -u 's/^/  /'
rc=${PIPESTATUS[0]}
set -e
end=$(date +%s)
echo "e2e: $( ((rc == 0)) && echo PASSED || echo FAILED) in $((end - start))s (builds $((images - start))s, node and tests $((end - images))s); logs in bin/e2e-logs/"
exit "$rc"
