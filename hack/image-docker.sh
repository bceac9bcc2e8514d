#!/usr/bin/env bash
# make test-image-docker: `docker load` accepts make image's archive, and the
# loaded image has the labels, user and entrypoint make image wrote and runs.
#
# Usage: hack/image-docker.sh ARCHIVE REFERENCE VERSION REVISION
#
# A private dockerd (Debian's docker.io, or any dockerd on PATH) runs inside
# network, mount and PID namespaces of its own, with no bridge and no
# iptables rules, its data, exec root and socket in a temporary directory
# and its containers under a cgroup parent of its own: the host's links,
# netfilter rules, /run and /var/lib/docker are untouched, the daemon dies
# with the PID namespace, and the directory and cgroups are removed here.
# Skips (and succeeds) with a plain message when it cannot run: no dockerd,
# not root, not Linux, no namespaces.
set -euo pipefail

[[ $# == 4 ]] || { echo "usage: $0 ARCHIVE REFERENCE VERSION REVISION" >&2; exit 2; }
archive=$(realpath "$1") ref=$2 version=$3 revision=$4

skip() { echo "test-image-docker: SKIPPED: $1"; exit 0; }
[[ "$(uname -s)" == Linux ]] || skip "it needs Linux"
[[ "$(id -u)" == 0 ]] || skip "it needs root (a private dockerd in namespaces of its own)"
command -v dockerd >/dev/null || skip "no dockerd on PATH (Debian: apt-get install docker.io)"
command -v docker >/dev/null || skip "no docker client on PATH"
unshare --net --mount --pid --fork true 2>/dev/null || skip "this machine does not allow new network, mount and PID namespaces"

work=$(mktemp -d /tmp/visio-image-docker.XXXXXX)
cgroup=visio-image-docker-${work##*.}
cleanup() {
	local d
	for d in /sys/fs/cgroup/*/"$cgroup"; do
		[[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

set +e
unshare --net --mount --pid --fork --kill-child --mount-proc bash -c '
	set -euo pipefail
	work=$1 archive=$2 ref=$3 version=$4 revision=$5 cgroup=$6
	ip link set lo up
	mount -t tmpfs tmpfs /run
	dockerd --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
		--data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
		--host "unix://$work/docker.sock" --cgroup-parent "/$cgroup" >"$work/dockerd.log" 2>&1 &
	export DOCKER_HOST=unix://$work/docker.sock DOCKER_CONFIG=$work/client
	for _ in $(seq 120); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
	docker version --format "dockerd {{.Server.Version}}" || { tail -20 "$work/dockerd.log" >&2; exit 1; }

	fail() { echo "test-image-docker: FAIL: $*" >&2; exit 1; }
	docker load -i "$archive"
	docker image inspect "$ref" >/dev/null || fail "docker load did not tag $ref"
	got() { docker image inspect "$ref" --format "$1"; }
	[[ "$(got "{{.Os}}/{{.Architecture}}")" == linux/* ]] || fail "platform $(got "{{.Os}}/{{.Architecture}}")"
	[[ "$(got "{{.Config.User}}")" == 65532:65532 ]] || fail "user $(got "{{.Config.User}}"), want 65532:65532"
	[[ "$(got "{{json .Config.Entrypoint}}")" == "[\"/manager\"]" ]] || fail "entrypoint $(got "{{json .Config.Entrypoint}}")"
	label() { got "{{index .Config.Labels \"$1\"}}"; }
	[[ "$(label org.opencontainers.image.version)" == "$version" ]] || fail "label version $(label org.opencontainers.image.version), want $version"
	[[ "$(label org.opencontainers.image.revision)" == "$revision" ]] || fail "label revision $(label org.opencontainers.image.revision), want $revision"
	[[ "$(label org.opencontainers.image.title)" == visio-operator ]] || fail "label title $(label org.opencontainers.image.title)"
	out=$(docker run --rm --network none "$ref" --version) || fail "docker run $ref --version"
	[[ "$out" == "visio-operator $version" ]] || fail "--version printed \"$out\", want \"visio-operator $version\""
	echo "docker load, inspect (user, entrypoint, labels) and run --version: $out"
' image-docker "$work" "$archive" "$ref" "$version" "$revision" "$cgroup"
rc=$?
set -e
echo "test-image-docker: $( ((rc == 0)) && echo PASSED || echo FAILED)"
exit "$rc"
