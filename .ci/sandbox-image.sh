#!/usr/bin/env bash
# The container sandbox backend's engine and image, for CI on a machine with no registry:
# Debian's podman (runc: crun refuses this kind of VM's hybrid cgroups), a containers.conf that
# asks for no more rlimits than the VM grants, and an image `tamma-sandbox:bookworm` made with
# debootstrap (minbase + python3 + venv), imported into podman. Idempotent; prints the
# environment the tests need (CONTAINERS_CONF, SANDBOX_TEST_IMAGE) on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
WORK=${WORK:-/tmp/tamma-ci-containers}
IMAGE=localhost/tamma-sandbox:bookworm
mkdir -p "$WORK"
log() { printf '== %s\n' "$*" >&2; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  log "apt: podman runc debootstrap"
  { apt-get install -y -q podman runc debootstrap uidmap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q podman runc debootstrap uidmap >/dev/null; }; } >&2
fi

write_containers_conf "$WORK"

if ! podman image exists "$IMAGE"; then
  MIRROR=$(debian_mirror)
  R="$WORK/rootfs"
  if [ ! -x "$R/usr/bin/python3" ] || [ ! -e "$R/usr/lib/python3.11/ensurepip" ]; then
    log "debootstrap bookworm minbase + python3 from $MIRROR"
    rm -rf "$R"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1
    rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
  fi
  log "podman import $IMAGE"
  tar -C "$R" -c . | podman import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$IMAGE" >/dev/null
fi
podman run --rm --network none "$IMAGE" python3 -c 'print("sandbox image runs")' >&2

# The multi-language image (Python, Node + corepack, Rust, Go, C/C++) from the recipe users get,
# deploy/sandbox/Containerfile, on the image above instead of debian:bookworm-slim (no registry
# here). The build reaches the Debian mirror and npm as the host does (--network host); this
# machine's extra CAs (its TLS is inspected) go into the image, as a company's would. ~1.5 min, ~2 GB.
MULTI=localhost/tamma-sandbox-multi:bookworm
RECIPE="$(dirname "$0")/../deploy/sandbox/Containerfile"
cat /usr/local/share/ca-certificates/*.crt > "$WORK/extra-ca.crt" 2>/dev/null || : > "$WORK/extra-ca.crt"
LABEL="tamma.recipe=$(cat "$RECIPE" "$WORK/extra-ca.crt" | sha256sum | cut -c1-16)"
if [ "$(podman image inspect --format '{{index .Labels "tamma.recipe"}}' "$MULTI" 2>/dev/null)" != "${LABEL#tamma.recipe=}" ]; then
  log "podman build $MULTI from deploy/sandbox/Containerfile"
  podman build --network host --build-arg BASE="$IMAGE" --label "$LABEL" \
    --volume "$WORK/extra-ca.crt:/run/extra-ca.crt:ro" --build-arg EXTRA_CA="$([ -s "$WORK/extra-ca.crt" ] && echo /run/extra-ca.crt)" \
    -t "$MULTI" -f "$RECIPE" "$(dirname "$RECIPE")" >"$WORK/multi-build.log" 2>&1 \
    || { tail -30 "$WORK/multi-build.log" >&2; exit 1; }
fi
echo "export CONTAINERS_CONF=$WORK/containers.conf SANDBOX_TEST_IMAGE=$IMAGE SANDBOX_MULTI_IMAGE=$MULTI"
