#!/usr/bin/env bash
# Builds the Flux source-controller and kustomize-controller that make test-gitops
# runs against the local control plane, and prints the directory that holds them:
#   <dir>/source-controller, <dir>/kustomize-controller, <dir>/crds/*.yaml, <dir>/VERSION
#
# No prebuilt download is reachable from the machines this project runs on, so the
# sources pinned in hack/gitops/go.mod are compiled once (about 10 minutes cold on
# 2 cores) and cached outside the repository; the CRDs are those the same module
# versions ship (config/crd/bases). The cache key is a hash of that go.mod and
# go.sum: a change of version rebuilds, everything else reuses.
#
# Versions: kustomize-controller v1.9.6 and source-controller v1.9.6 (Flux 2.9),
# the newest that build with this project's Go (go 1.26 in their go.mod). v1.10.x
# declares go 1.27, which would need GOTOOLCHAIN=go1.27.3 for this build and a
# second toolchain on every machine that runs make test, for no gain in what the
# tests prove: the Kustomization, GitRepository and health-check behaviour under
# test is the same in both.
#
# Environment:
#   VISIO_CACHE_DIR  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/visio-operator)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/gitops"
version_of() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod"; }
kc_version=$(version_of github.com/fluxcd/kustomize-controller)
sc_version=$(version_of github.com/fluxcd/source-controller)
[[ -n "$kc_version" && -n "$sc_version" ]] || { echo "gitops: cannot read the Flux versions from $mod/go.mod" >&2; exit 1; }

key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
cache_root=${VISIO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/visio-operator}
dir="$cache_root/gitops/kustomize-controller-$kc_version-source-controller-$sc_version-$key"
stamp="kustomize-controller $kc_version source-controller $sc_version $key"

complete() {
	local d=$1
	[[ -x "$d/source-controller" && -x "$d/kustomize-controller" ]] || return 1
	compgen -G "$d/crds/*.yaml" >/dev/null || return 1
	[[ -f "$d/VERSION" ]] && [[ "$(cat "$d/VERSION")" == "$stamp" ]]
}

if complete "$dir"; then
	echo "$dir"
	exit 0
fi

# One build at a time: parallel runs share the cache.
mkdir -p "$cache_root/gitops"
exec 9>"$cache_root/gitops/.lock"
flock 9
if complete "$dir"; then
	echo "$dir"
	exit 0
fi

echo "gitops: building Flux kustomize-controller $kc_version and source-controller $sc_version into $dir (minutes the first time)" >&2
start=$(date +%s)
tmp=$(mktemp -d "$cache_root/gitops/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

(
	cd "$mod"
	export CGO_ENABLED=0 GOFLAGS=-mod=mod
	go build -trimpath -ldflags "-s -w" -o "$tmp/" \
		github.com/fluxcd/source-controller \
		github.com/fluxcd/kustomize-controller
	mkdir -p "$tmp/crds"
	for m in github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller; do
		src=$(go list -m -f '{{.Dir}}' "$m")
		cp "$src"/config/crd/bases/*.yaml "$tmp/crds/"
	done
	chmod 644 "$tmp"/crds/*.yaml
)
echo "$stamp" >"$tmp/VERSION"
rm -rf "$dir"
chmod 755 "$tmp"
mv "$tmp" "$dir"
trap - EXIT
echo "gitops: built in $(($(date +%s) - start))s" >&2
echo "$dir"
