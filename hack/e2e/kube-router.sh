#!/usr/bin/env bash
# Builds kube-router from the Go module proxy and prints the directory that
# holds it. The real node of make test-e2e runs only its network policy
# controller (--run-firewall, no router, no service proxy): the bridge CNI
# plugin does not enforce NetworkPolicy, and this is the lightest controller
# that does and that builds from Go sources alone (it drives iptables and
# ipset, from Debian).
#
# Cached like the node binaries (hack/controlplane.sh), in an entry of its
# own keyed by the version and build flags: a change of either rebuilds,
# everything else reuses. Cold (nothing in the module or build caches): about
# 8 minutes of CPU, 21 minutes measured on 2 cores shared with other builds;
# warm, a 30 s link.
#
# Environment:
#   VISIO_CACHE_DIR  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/visio-operator)
set -euo pipefail

module=github.com/cloudnativelabs/kube-router/v2
version=v2.1.0
ldflags="-s -w -X $module/pkg/version.Version=$version -X $module/pkg/version.BuildDate=1970-01-01T00:00:00Z"
key=$(echo "$module $version $ldflags" | sha256sum | cut -c1-12)
cache_root=${VISIO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/visio-operator}
dir="$cache_root/netpol/kube-router-$version-$key"

complete() { [[ -x "$1/kube-router" ]] && [[ -f "$1/VERSION" ]] && [[ "$(cat "$1/VERSION")" == "$version $key" ]]; }
if complete "$dir"; then
	echo "$dir"
	exit 0
fi

mkdir -p "$cache_root/netpol"
exec 9>"$cache_root/netpol/.lock"
flock 9
if complete "$dir"; then
	echo "$dir"
	exit 0
fi

echo "kube-router: building $version into $dir (a minute or two the first time)" >&2
start=$(date +%s)
tmp=$(mktemp -d "$cache_root/netpol/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Outside any module: the versions are kube-router's own go.mod, checked
# against the checksum database.
(cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath -ldflags "$ldflags" "$module/cmd/kube-router@$version")
echo "$version $key" >"$tmp/VERSION"
rm -rf "$dir"
chmod 755 "$tmp"
mv "$tmp" "$dir"
trap - EXIT
echo "kube-router: built in $(($(date +%s) - start))s" >&2
echo "$dir"
