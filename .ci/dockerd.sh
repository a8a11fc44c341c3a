#!/usr/bin/env bash
# A Docker engine of our own for the container backend of the test registries, and the
# registry image it runs, with no network at all (nothing can be pulled):
#
#   .ci/dockerd.sh start   start dockerd with its data under a fresh `mktemp -d`, vfs storage,
#                          no bridge, no iptables (containers share the host's network, so
#                          traffic stays on 127.0.0.1); print `export DOCKER_HOST=...` lines
#   .ci/dockerd.sh stop    stop the dockerd that `start` started (by its PID), remove its
#                          directory, and docker0 if it appeared anyway
#   .ci/dockerd.sh image   build localhost/ocimerge-test-registry:2.8 from /usr/bin/docker-registry
#                          with `docker import` (the binary, libc and the loader as ldd lists
#                          them, a config.yml, var/lib/registry, tmp), unless it exists
#   .ci/dockerd.sh engine  exit 0 if a Docker engine answers `docker info` (DOCKER_HOST or the
#                          default socket), else 1
#   .ci/dockerd.sh run CMD...
#                          run CMD with OCIMERGE_TEST_REGISTRY=container against an engine: the
#                          one that answers, else one started here and stopped when CMD ends
#                          (also on failure or interruption). The image is
#                          $OCIMERGE_TEST_REGISTRY_IMAGE; unset, the one `image` builds where
#                          /usr/bin/docker-registry is installed, else registry:2 (pulled).
#
# The state file (OCIMERGE_DOCKERD_STATE, default /tmp/ocimerge-dockerd.state) remembers the
# directory and PID between `start` and `stop`, so `stop` never touches an engine it did not start.
set -euo pipefail

IMAGE=${OCIMERGE_TEST_REGISTRY_IMAGE:-localhost/ocimerge-test-registry:2.8}
STATE=${OCIMERGE_DOCKERD_STATE:-/tmp/ocimerge-dockerd.state}
REGISTRY_BINARY=/usr/bin/docker-registry

engine() {
    timeout 20 docker info >/dev/null 2>&1
}

start() {
    if [ -e "$STATE" ]; then
        echo "dockerd.sh: $STATE exists; run '$0 stop' first" >&2
        exit 1
    fi
    command -v dockerd >/dev/null || { echo "dockerd.sh: no dockerd (apt-get install docker.io)" >&2; exit 1; }
    local dir
    dir=$(mktemp -d /tmp/ocimerge-dockerd.XXXXXX)
    # the flags as /work/shared/reference/docker-in-ci.md found them to work: no docker0,
    # no iptables rules, no masquerading; its own socket, so no other engine is disturbed
    dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/pid" -H "unix://$dir/sock" \
        --storage-driver vfs --bridge=none --iptables=false --ip-masq=false >"$dir/log" 2>&1 &
    local pid=$!
    printf 'DIR=%s\nPID=%s\n' "$dir" "$pid" >"$STATE"
    export DOCKER_HOST="unix://$dir/sock"
    local waited=0
    until engine; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "dockerd.sh: dockerd exited; its log:" >&2
            tail -n 30 "$dir/log" >&2
            exit 1
        fi
        waited=$((waited + 1))
        if [ "$waited" -gt 60 ]; then
            echo "dockerd.sh: dockerd did not answer docker info in 60 s; its log:" >&2
            tail -n 30 "$dir/log" >&2
            exit 1
        fi
        sleep 1
    done
    echo "export DOCKER_HOST=unix://$dir/sock"
}

stop() {
    [ -e "$STATE" ] || return 0
    local DIR="" PID=""
    # shellcheck disable=SC1090
    . "$STATE"
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        for _ in $(seq 1 30); do
            kill -0 "$PID" 2>/dev/null || break
            sleep 1
        done
        kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
    fi
    if ip link show docker0 >/dev/null 2>&1; then
        ip link delete docker0 || true
    fi
    # containerd's shims may leave mounts under the exec root; a vfs data root is plain files
    if [ -n "$DIR" ] && [ -d "$DIR" ]; then
        grep -o " $DIR[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
        rm -rf "$DIR"
    fi
    rm -f "$STATE"
}

image() {
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        echo "dockerd.sh: $IMAGE is there"
        return 0
    fi
    [ -x "$REGISTRY_BINARY" ] || { echo "dockerd.sh: no $REGISTRY_BINARY (apt-get install docker-registry)" >&2; exit 1; }
    local work
    work=$(mktemp -d /tmp/ocimerge-registry-image.XXXXXX)
    local root="$work/rootfs"
    mkdir -p "$root/bin" "$root/etc/docker/registry" "$root/var/lib/registry" "$root/tmp"
    chmod 1777 "$root/tmp"
    cp "$REGISTRY_BINARY" "$root/bin/registry"
    # the shared libraries and the loader, at the paths ldd names
    ldd "$REGISTRY_BINARY" | grep -o '/[^ ]*' | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    # the same defaults as the registry:2 image; the tests override them with REGISTRY_* variables
    cat >"$root/etc/docker/registry/config.yml" <<'EOF'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    tar -C "$root" -cf "$work/rootfs.tar" .
    docker import -c 'ENTRYPOINT ["/bin/registry","serve","/etc/docker/registry/config.yml"]' \
        "$work/rootfs.tar" "$IMAGE" >/dev/null
    rm -rf "$work"
    echo "dockerd.sh: built $IMAGE"
}

run() {
    if engine; then
        echo "dockerd.sh: using the Docker engine at ${DOCKER_HOST:-the default socket}" >&2
    else
        # a state file of this run's own, so that only the engine started here is stopped
        STATE=$(mktemp -u /tmp/ocimerge-dockerd.XXXXXX.state)
        export OCIMERGE_DOCKERD_STATE=$STATE
        trap stop EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        local exports
        exports=$(start) # set -e stops here, and the EXIT trap runs, when it fails
        eval "$exports"
        echo "dockerd.sh: started dockerd (pid $(sed -n 's/^PID=//p' "$STATE")) at $DOCKER_HOST" >&2
    fi
    if [ -z "${OCIMERGE_TEST_REGISTRY_IMAGE:-}" ]; then
        if [ -x "$REGISTRY_BINARY" ]; then
            OCIMERGE_TEST_REGISTRY_IMAGE=localhost/ocimerge-test-registry:2.8
        else
            OCIMERGE_TEST_REGISTRY_IMAGE=registry:2
        fi
    fi
    IMAGE=$OCIMERGE_TEST_REGISTRY_IMAGE
    export OCIMERGE_TEST_REGISTRY_IMAGE
    if [ "$IMAGE" = localhost/ocimerge-test-registry:2.8 ]; then
        image
    fi
    OCIMERGE_TEST_REGISTRY=container "$@"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
image) image ;;
engine) engine ;;
run)
    shift
    [ "$#" -gt 0 ] || { echo "usage: $0 run CMD..." >&2; exit 2; }
    run "$@"
    ;;
*)
    echo "usage: $0 start|stop|image|engine|run CMD..." >&2
    exit 2
    ;;
esac
