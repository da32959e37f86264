#!/usr/bin/env bash
# A .deb of the standalone build (.ci/binary.sh first): /opt/tamma/{tamma,_internal,temporal} and
# /usr/bin/tamma -> /opt/tamma/tamma, the systemd units, built with dpkg-deb. Prints `export RELEASE_DEB=...`.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${DEPLOY_WORK:-/tmp/tamma-ci-deploy}
B=${RELEASE_BINARY_DIR:-$WORK/pyi/dist/tamma}
[ -x "$B/tamma" ] && [ -x "$B/temporal" ] || { echo "no binary in $B: run .ci/binary.sh first" >&2; exit 1; }
VERSION=$("$B/tamma" --version | awk '{print $2}')
DEBV=$(printf '%s' "$VERSION" | sed 's/\.dev/~dev/')   # a dev build sorts before its release (Debian's '~')
ARCH=$(dpkg --print-architecture)   # amd64 or arm64: the build is for the machine it ran on
D="$WORK/deb/tamma_${DEBV}_${ARCH}"; rm -rf "$WORK/deb"; mkdir -p "$D/DEBIAN" "$D/opt/tamma" "$D/usr/bin" "$D/usr/share/doc/tamma"
cp -a "$B"/. "$D/opt/tamma/"
ln -s /opt/tamma/tamma "$D/usr/bin/tamma"
cp LICENSE "$D/usr/share/doc/tamma/copyright"
# systemd units (not enabled: see deploy/systemd/tamma-server.service) and the environment file's example
mkdir -p "$D/usr/lib/systemd/system"
cp deploy/systemd/tamma-server.service deploy/systemd/tamma-worker@.service "$D/usr/lib/systemd/system/"
cp deploy/systemd/tamma.env.example "$D/usr/share/doc/tamma/"
cat >"$D/DEBIAN/control" <<CTL
Package: tamma
Version: $DEBV
Architecture: $ARCH
Maintainer: Tamma maintainers <tamma@example.invalid>
Depends: git, util-linux, python3
Recommends: bubblewrap
Section: devel
Priority: optional
Homepage: https://github.com/tamma-dev/tamma
Description: autonomous development agent on Temporal
 Assign it an issue: it analyses, plans, writes the code, runs the tests in a
 sandbox, opens a pull request and merges when policy allows. One-folder build of
 the tamma CLI, with the Temporal dev-server binary for the embedded default.
CTL
dpkg-deb --root-owner-group -Zxz --build "$D" "$WORK/deb/" >/dev/null
echo "export RELEASE_DEB=$(ls "$WORK"/deb/*.deb)"
