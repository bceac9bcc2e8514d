#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kubectl) from the Go module proxy and prints the directory that holds the binaries.
# `hack/controlplane.sh node` builds the node instead (kubelet, kube-scheduler,
# kube-proxy, for make test-e2e: about 80 s more on a warm build cache).
#
# No prebuilt download is reachable from the machines this project runs on, so the
# sources pinned in hack/controlplane/go.mod are compiled once (about 9 minutes cold
# on 2 cores) and cached outside the repository. The cache key is a hash of that
# go.mod and go.sum: a change of version rebuilds, everything else reuses.
#
# Environment:
#   VISIO_CACHE_DIR  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/visio-operator)
#   KUBEBUILDER_ASSETS  when set and holding all three envtest binaries, used as is
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/controlplane"
k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod")
[[ -n "$k8s_version" ]] || { echo "controlplane: cannot read the k8s.io/kubernetes version from $mod/go.mod" >&2; exit 1; }

key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
cache_root=${VISIO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/visio-operator}
part=${1:-controlplane}
case "$part" in
controlplane) bins=(etcd kube-apiserver kube-controller-manager kubectl) ;;
node) bins=(kubelet kube-scheduler kube-proxy) ;;
*) echo "usage: $0 [controlplane|node]" >&2; exit 2 ;;
esac
dir="$cache_root/$part/$k8s_version-$key"

complete() {
	local d=$1 b
	for b in "${bins[@]}"; do [[ -x "$d/$b" ]] || return 1; done
	[[ -f "$d/VERSION" ]] && [[ "$(cat "$d/VERSION")" == "$k8s_version $key" ]]
}

if complete "$dir"; then
	echo "$dir"
	exit 0
fi

# One build at a time: parallel `make test` and `make run` share the cache.
mkdir -p "$cache_root/controlplane" "$cache_root/$part"
exec 9>"$cache_root/controlplane/.lock"
flock 9
if complete "$dir"; then
	echo "$dir"
	exit 0
fi

echo "controlplane: building ${bins[*]} $k8s_version into $dir (minutes the first time)" >&2
start=$(date +%s)
tmp=$(mktemp -d "$cache_root/$part/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v"$major".}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

(
	cd "$mod"
	export CGO_ENABLED=0 GOFLAGS=-mod=mod
	if [[ "$part" == node ]]; then
		go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
			k8s.io/kubernetes/cmd/kubelet \
			k8s.io/kubernetes/cmd/kube-scheduler \
			k8s.io/kubernetes/cmd/kube-proxy
		exit
	fi
	go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kubectl
	go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
)
echo "$k8s_version $key" >"$tmp/VERSION"
rm -rf "$dir"
chmod 755 "$tmp"
mv "$tmp" "$dir"
trap - EXIT
echo "controlplane: built in $(($(date +%s) - start))s" >&2
echo "$dir"
