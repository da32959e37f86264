"""The GitHub stand-in as a service of the compose test (`python -m tests.deploy.forge_main`),
and the sender of its webhook (`... deliver`), both run inside the compose network.

serve:   a bare repository with the demo project and its issue #1 under $FORGE_DIR, GitHub's REST
         API for it on 0.0.0.0:8080 (tests/standins/github_api.py), the demo's recorded model
         answers beside it; $FORGE_DIR/ready once it listens.
deliver: the `issues.assigned` delivery (a real GitHub payload, tests/fixtures) for that issue,
         signed with $GITHUB_WEBHOOK_SECRET, posted to $TAMMA_URL; prints the answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sys
import threading
import urllib.request
from pathlib import Path

OWNER, NAME, TOKEN = "acme", "pager", "ghp_compose_test"


def serve() -> None:
    from tamma.demo import DEMO_BODY, DEMO_TITLE, make_sample_repo
    from tamma.providers.scripted import DEMO_TRANSCRIPT
    from tests.standins.git_remote import BareRemote
    from tests.standins.github_api import FakeGitHub
    from tests.standins.http import serve as http_serve

    forge = Path(os.environ.get("FORGE_DIR", "/data"))
    (forge / "ready").unlink(missing_ok=True)
    remote_path = forge / "remote.git"
    if remote_path.exists():
        shutil.rmtree(remote_path)
    work = forge / "scratch"
    shutil.rmtree(work, ignore_errors=True)
    remote = BareRemote.from_worktree(make_sample_repo(work / "src"), remote_path)
    shutil.copy(DEMO_TRANSCRIPT, forge / "transcript.json")
    fake = FakeGitHub(OWNER, NAME, remote, TOKEN)
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    with http_serve(fake, host="0.0.0.0", port=8080):
        fake.base = os.environ.get("FORGE_URL", "http://github:8080")
        (forge / "ready").write_text("listening\n")
        print(f"GitHub stand-in for {fake.full} on :8080, git at {remote_path}", flush=True)
        threading.Event().wait()


def deliver() -> None:
    payload = json.loads((Path(__file__).parents[1] / "fixtures/webhooks/github/issues/assigned.json").read_text())
    payload["repository"] = dict(payload["repository"], full_name=f"{OWNER}/{NAME}")
    payload["issue"] = dict(payload["issue"], number=1)
    body = json.dumps(payload).encode()
    secret = os.environ["GITHUB_WEBHOOK_SECRET"].encode()
    request = urllib.request.Request(
        os.environ.get("TAMMA_URL", "http://server:3000") + "/webhooks/github",
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "x-github-event": "issues",
            "x-github-delivery": "compose-test-1",
            "x-hub-signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
        },
    )
    with urllib.request.urlopen(request, timeout=20) as answer:
        print(json.dumps({"status": answer.status, **json.loads(answer.read())}))


if __name__ == "__main__":
    deliver() if sys.argv[1:] == ["deliver"] else serve()
