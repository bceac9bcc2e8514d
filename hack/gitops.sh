#!/usr/bin/env bash
# Builds the Flux source-controller and kustomize-controller that make test-gitops
# runs against the local control plane, and prints the directory that holds them:
#   <dir>/source-controller, <dir>/kustomize-controller, <dir>/crds/*.yaml, <dir>/VERSION
#
# No prebuilt download is reachable from the machines this project runs on, so the
# sources pinned in hack/gitops/go.mod are compiled once (9 minutes cold on 2 cores,
# about 11 minutes of CPU; 27 minutes measured beside other builds) and cached
# outside the repository; the CRDs are those the same module versions ship
# (config/crd/bases). The cache key is a hash of that go.mod and go.sum: a change
# of version rebuilds, everything else reuses.
#
# Versions: kustomize-controller v1.9.6 and source-controller v1.9.6, the newest
# that build with the Go this project requires (their go.mod says go 1.26.0, and
# both are on k8s.io v0.36.4, so one module holds them). v1.10.x says go 1.27.0:
# it would need GOTOOLCHAIN=go1.27.3, a second toolchain downloaded on every
# machine that runs make test. source-controller v1.9.6 asks for
# github.com/fluxcd/pkg/artifact v0.18.3, which the module proxy refuses here;
# go.mod replaces it by v0.18.1.
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
