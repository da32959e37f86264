#!/usr/bin/env bash
# Prometheus and promtool for the observability test (deploy/observability: the alert rules are
# checked by promtool, the dashboard plotted by a Prometheus scraping a live server and worker).
# Debian's package; prints the export line the tests read (eval "$(bash .ci/observability-tools.sh)").
set -euo pipefail
# Also Debian's chromium and its driver, for the test that approves a plan in the Temporal Web UI.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v chromedriver >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  pkgs="prometheus chromium chromium-driver"
  apt-get install -y -qq --no-install-recommends $pkgs >&2 || {
    apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends $pkgs >&2
  }
fi
echo "export OBSERVABILITY_TEST_REQUIRE=1"
