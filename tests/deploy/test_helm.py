"""The Helm chart (deploy/k8s/tamma): `helm lint`, `helm template` with the default and a
production-like values file, every object validated with kubernetes-validate --strict, what the
chart promises asserted on the rendered objects, values.schema.json refusing bad values; then the
rendered server and worker run with `podman kube play` next to a Temporal stand-in, probes answering.

No Kubernetes API server can be had here. podman kube play (4.3) runs Deployments' pods but does
not apply everything: no HPA/PDB/NetworkPolicy/Ingress, probes are not run (podman would need
systemd timers and curl), `hostUsers: false` needs subuid ranges (so --userns host), and
`procMount: Unmasked` is ignored — so the worker with the default sandbox settings refuses to
start there (asserted), and the probes run uses sandbox.backend none. Its Secret support is also
older than Kubernetes': the test hands podman the rendered Secret in the form it reads."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT, VENV_BIN, WORK, run

CHART = ROOT / "deploy/k8s/tamma"
PRODUCTION = CHART / "ci/production-values.yaml"
CRDS = {"ScaledObject"}  # not Kubernetes' own: kubernetes-validate has no schema for them


def helm_binary() -> str:
    helm = os.environ.get("HELM") or str(WORK / "bin/helm")
    if not Path(helm).exists():
        run(["bash", str(ROOT / ".ci/helm.sh")], env=dict(os.environ, DEPLOY_WORK=str(WORK)))
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    home = WORK / "helm-home"
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / "c"), XDG_CONFIG_HOME=str(home / "c"))
    return run([helm_binary(), *args], check=check, env=env)


def render(*args: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm("template", "acme", str(CHART), *args).stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, (kind, suffix, [d["metadata"]["name"] for d in docs if d["kind"] == kind])
    return found[0]


def validate(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in CRDS]))
    for version in ("1.30.0", "1.37.0"):  # user namespaces are beta from 1.30
        run([str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", version, str(path)])


def test_lint_and_validate_the_default_and_a_production_install(tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "-f", str(PRODUCTION))
    for args in ([], ["-f", str(PRODUCTION)]):
        validate(render(*args), tmp_path)


def test_the_default_install_is_hardened_probed_and_scaled_by_its_hpa_alone() -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    worker, server = one(docs, "Deployment", "-worker"), one(docs, "Deployment", "-server")
    assert "replicas" not in worker["spec"]  # the HPA owns the count
    for deployment, port in ((server, 3000), (worker, 9464)):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1001
        assert pod["automountServiceAccountToken"] is False
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["allowPrivilegeEscalation"] is False
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/data", "/tmp"}
        assert container["livenessProbe"]["httpGet"]["path"] == "/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert server["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    wpod = worker["spec"]["template"]["spec"]
    assert wpod["terminationGracePeriodSeconds"] >= 30 + 10  # covers the 30 s drain
    # what bubblewrap needs, asked for explicitly (NOTES.txt and values.yaml say what it takes)
    assert wpod["hostUsers"] is False
    assert wpod["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": "tamma.json"}
    assert wpod["containers"][0]["securityContext"]["procMount"] == "Unmasked"
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    # no Secret unless given; the ConfigMap holds no secret
    config = one(docs, "ConfigMap")["data"]
    assert config["TAMMA_TEMPORAL__ADDRESS"] == "temporal-frontend.temporal:7233"
    assert not any("SECRET" in k or "TOKEN" in k or "KEY" in k for k in config)


def test_a_production_install_uses_temporal_cloud_an_existing_secret_ingress_tls_and_keda() -> None:
    docs = render("-f", str(PRODUCTION))
    kinds = {d["kind"] for d in docs}
    assert "Secret" not in kinds and "HorizontalPodAutoscaler" not in kinds  # existingSecret; KEDA instead
    worker = one(docs, "Deployment", "-worker")
    assert "replicas" not in worker["spec"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("registry.example.com/tamma@sha256:")
    assert {"secretRef": {"name": "tamma-secrets"}} in container["envFrom"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TAMMA_TEMPORAL__TLS_CLIENT_CERT"]["value"] == "/etc/tamma/temporal-tls/tls.crt"
    assert env["TAMMA_TEMPORAL__API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "temporal-cloud-api-key",
        "key": "api-key",
    }
    scaled = one(docs, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "temporal" and trigger["metadata"]["taskQueue"] == "tamma-prod-heavy"
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["tamma.acme.example"], "secretName": "tamma-tls"}]
    assert {p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]} == {"/webhooks", "/api"}
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("temporal.address=no-port", "/temporal/address"),
        ("worker.replica=3", "replica"),  # a typo is refused, not ignored
        ("worker.sandbox.backend=off", "backend"),
        ("config.LOG_LEVEL=debug", "LOG_LEVEL"),  # settings are TAMMA_* names
    ],
)
def test_the_values_schema_refuses_bad_values(setting: str, complaint: str) -> None:
    done = helm("template", "acme", str(CHART), "--set", setting, check=False)
    assert done.returncode != 0 and complaint in done.stderr, done.stderr


# ---- podman kube play ------------------------------------------------------------------------


def podman(
    *args: str, check: bool = True, ns: int | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    prefix = ["nsenter", "-t", str(ns), "-n"] if ns else []
    env = dict(os.environ, CONTAINERS_CONF=str(WORK / "containers.conf"))
    return run([*prefix, "podman", *args], check=check, env=env, timeout=timeout)


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A private network namespace with a podman network and a Temporal stand-in (kp-temporal)."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    time.sleep(0.3)
    ns = holder.pid
    run(["nsenter", "-t", str(ns), "-n", "ip", "link", "set", "lo", "up"])
    podman("network", "create", "kubetest", ns=ns, check=False)
    flags = [
        f"--search-attribute={a}"
        for a in ("TammaRepository=Keyword", "TammaIssue=Int", "TammaStep=Keyword", "TammaStatus=Keyword")
    ]
    podman(
        "run",
        "-d",
        "--name",
        "kp-temporal",
        "--network",
        "kubetest",
        "--user",
        "0:0",
        "localhost/temporalio/temporal:1.9.1",
        "server",
        "start-dev",
        "--ip",
        "0.0.0.0",
        *flags,
        ns=ns,
    )
    played: list[Path] = []
    try:
        yield ns, tmp_path
    finally:
        for path in tmp_path.glob("play-*.yaml"):
            podman("kube", "down", str(path), ns=ns, check=False)
        podman("rm", "-f", "kp-temporal", ns=ns, check=False)
        podman("secret", "rm", "acme-tamma-secrets", check=False)
        podman("network", "rm", "-f", "kubetest", ns=ns, check=False)
        holder.kill()
        holder.wait()
        del played


def play(ns: int, where: Path, name: str, docs: list[dict[str, Any]]) -> None:
    for secret in (d for d in docs if d["kind"] == "Secret"):
        # podman 4.3 reads a Secret as a JSON object of base64 values
        podman("secret", "rm", secret["metadata"]["name"], check=False)
        data = where / f"{name}-secret.json"
        data.write_text(json.dumps(secret["data"]))
        podman("secret", "create", secret["metadata"]["name"], str(data))
    path = where / f"play-{name}.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] in ("ConfigMap", "Deployment")]))
    seccomp = where / "seccomp"
    seccomp.mkdir(exist_ok=True)
    (seccomp / "tamma.json").write_text((ROOT / "deploy/docker/seccomp.json").read_text())
    podman(
        "kube",
        "play",
        "--network",
        "kubetest",
        "--userns",
        "host",
        "--seccomp-profile-root",
        str(seccomp),
        str(path),
        ns=ns,
    )


def get(ns: int, url: str) -> tuple[int, str]:
    code = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=3); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())\n"
        "except OSError as e:\n    print(0); print(e)\n"
    )
    out = run(["nsenter", "-t", str(ns), "-n", "python3", "-c", code, url]).stdout.split("\n", 1)
    return int(out[0]), out[1] if len(out) > 1 else ""


KUBE_VALUES = [
    "--set",
    "image.repository=localhost/tamma",
    "--set",
    "image.tag=ci",
    "--set",
    "image.pullPolicy=Never",
    "--set",
    "temporal.address=kp-temporal:7233",
    "--set",
    "server.replicas=1",
    "--set",
    "worker.autoscaling.enabled=false",
    "--set",
    "worker.replicas=1",
    "--set-string",
    'secrets.values.TAMMA_WEBHOOKS__GITHUB_SECRETS=["kube-secret"]',
    "--set",
    "secrets.values.TAMMA_API__JWT_SECRET=kube-jwt-secret-0123456789",
]


def test_the_rendered_server_and_worker_run_under_podman_kube_play_and_answer_their_probes(
    kube: tuple[int, Path],
) -> None:
    ns, where = kube
    docs = render(*KUBE_VALUES, "--set", "worker.sandbox.backend=none", "--set", "worker.sandbox.userNamespaces=false")
    play(ns, where, "acme", docs)
    pods = {
        c: podman("inspect", "-f", "{{.NetworkSettings.Networks.kubetest.IPAddress}}", c).stdout.strip()
        for c in ("acme-tamma-server-pod-0-server", "acme-tamma-worker-pod-0-worker")
    }
    t0 = time.monotonic()
    for deployment in (one(docs, "Deployment", "-server"), one(docs, "Deployment", "-worker")):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        ip = pods[f"acme-tamma-{deployment['metadata']['name'].rsplit('-', 1)[1]}-pod-0-{container['name']}"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            action = container[probe]["httpGet"]
            url = f"http://{ip}:{ports[action['port']]}{action['path']}"
            while (answer := get(ns, url))[0] != 200:
                assert time.monotonic() - t0 < 90, (url, answer, podman("logs", "--tail", "20", ip, check=False))
                time.sleep(0.5)
    print(f"\nkube play: server and worker answering every probe {time.monotonic() - t0:.1f} s after play")
    worker = "acme-tamma-worker-pod-0-worker"
    ready = json.loads(get(ns, f"http://{pods[worker]}:9464/ready")[1])
    assert ready["phase"] == "polling" and ready["task_queue"] == "tamma"
    # the rendered settings reached the process: the demo runs through the pod's worker
    demo = podman("exec", worker, "tamma", "demo", "--dir", "/data/demo/pager", timeout=240)
    assert "Merged" in demo.stdout and "(already running)" in demo.stdout, demo.stdout  # the pod's worker ran it
    podman("stop", "-t", "40", worker, timeout=60)
    assert podman("inspect", "-f", "{{.State.ExitCode}}", worker).stdout.strip() == "0"


def test_a_worker_whose_sandbox_cannot_start_under_kube_play_refuses_and_says_why(kube: tuple[int, Path]) -> None:
    ns, where = kube
    docs = [d for d in render(*KUBE_VALUES) if d["kind"] in ("ConfigMap", "Deployment", "Secret")]
    docs = [d for d in docs if d["kind"] != "Deployment" or d["metadata"]["name"].endswith("-worker")]
    play(ns, where, "sandboxed", docs)
    worker = "acme-tamma-worker-pod-0-worker"
    logs = ""
    for _ in range(100):
        logs = podman("logs", worker, check=False).stderr + podman("logs", worker, check=False).stdout
        if "refusing to run agent code" in logs:
            break
        time.sleep(0.3)
    assert "refusing to run agent code" in logs and "Can't mount proc" in logs, logs
    assert "Traceback" not in logs
    assert base64  # (the Secret handed to podman above is base64, as Kubernetes keeps it)
