#!/usr/bin/env bash
# The standalone build for this machine: .ci/standalone.py (PyInstaller one-folder, `temporal`
# beside the executable, packed with its SHA256SUMS), the same file the release workflow runs on
# every OS of its matrix. Prints `export RELEASE_BINARY_DIR=...` and `export RELEASE_ARCHIVE=...`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 .ci/standalone.py "$@"
