#!/usr/bin/env bash
# The CI's own Docker daemon (Debian's docker.io), data and socket under $DEPLOY_WORK/docker, never the
# machine's: `host` runs it in the host's network namespace with no bridge and no iptables changes
# (builds reach the package registries; containers use --network host or none); `private` runs it
# in a network namespace of its own (compose's bridge network, DNS and published ports stay
# inside it); `stop` ends it (by its pid file) and that namespace. Both modes share the data root.
set -euo pipefail
WORK=${DEPLOY_WORK:-/tmp/tamma-ci-deploy}
D="$WORK/docker"; mkdir -p "$D/data" "$D/exec"
SOCK="unix://$D/docker.sock"
stop() {
  local pid; pid=$(cat "$D/dockerd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"; for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  fi
  local ns; ns=$(cat "$D/netns.pid" 2>/dev/null || true)
  [ -n "$ns" ] && kill "$ns" 2>/dev/null || true
  for m in "$D"/exec/netns/*; do mountpoint -q "$m" 2>/dev/null && umount "$m" || true; done
  rm -f "$D/netns.pid" "$D/dockerd.pid" "$D/docker.sock"
}
args=(--data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/dockerd.pid" -H "$SOCK")
case "${1:-}" in
  host)
    stop
    dockerd "${args[@]}" --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false >"$D/dockerd.log" 2>&1 &
    ;;
  private)
    stop
    unshare --net sleep infinity >/dev/null 2>&1 &
    ns=$!; echo "$ns" >"$D/netns.pid"; sleep 0.3
    nsenter -t "$ns" -n ip link set lo up
    nsenter -t "$ns" -n dockerd "${args[@]}" >"$D/dockerd.log" 2>&1 &
    ;;
  stop) stop; exit 0 ;;
  *) echo "usage: $0 host|private|stop" >&2; exit 2 ;;
esac
new=$!
for _ in $(seq 150); do
  if [ "$(cat "$D/dockerd.pid" 2>/dev/null)" = "$new" ] && DOCKER_HOST=$SOCK /usr/bin/docker version >/dev/null 2>&1; then
    echo "dockerd up ($1, pid $new): DOCKER_HOST=$SOCK" >&2; exit 0
  fi
  kill -0 "$new" 2>/dev/null || break
  sleep 0.2
done
echo "dockerd did not start; see $D/dockerd.log" >&2; tail -5 "$D/dockerd.log" >&2; exit 1
