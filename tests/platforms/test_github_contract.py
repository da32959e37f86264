"""Contract test: every GitPlatform method of the GitHub platform, through PyGithub, against
Prism serving GitHub's own OpenAPI description (@octokit/openapi) with request validation, and
the GraphQL Tamma sends validated against GitHub's published schema (@octokit/graphql-schema).

The stand-in in tests/standins/github_api.py is ours; this checks our requests against GitHub's
description of its API instead. Prism answers with the description's own examples (an
octocat/Hello-World world), so the methods' outcomes are not asserted here — only that every request they
make is one GitHub documents, with parameters and bodies it accepts.

Needs Node and the npm tools (`.ci/contract-tools.sh` installs them and exports
CONTRACT_NODE_MODULES); skipped with the reason where they are missing, except in CI
(CONTRACT_TEST_REQUIRE=1), where a missing tool fails the test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from tamma.config import GitHubSettings
from tamma.errors import TammaError
from tamma.models import PullRequest, RepoRef, ReviewComment, TestReport
from tamma.platforms.github import _ENQUEUE, _QUEUE_ENTRY, _THREADS, GitHubPlatform
from tests.ports import free_port
from tests.standins.http import Reply, Request, serve

MODULES = Path(os.environ.get("CONTRACT_NODE_MODULES", "/nonexistent"))
REQUIRED = os.environ.get("CONTRACT_TEST_REQUIRE") == "1"
PRISM = MODULES / ".bin" / "prism"
SPEC = MODULES / "@octokit" / "openapi" / "generated" / "api.github.com.json"
GRAPHQL_SCHEMA = MODULES / "@octokit" / "graphql-schema" / "schema.graphql"

pytestmark = [
    pytest.mark.contract,
    pytest.mark.skipif(
        not (PRISM.exists() and SPEC.exists() and GRAPHQL_SCHEMA.exists()) and not REQUIRED,
        reason="Prism and GitHub's API descriptions are not installed (bash .ci/contract-tools.sh)",
    ),
]


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    violations: list[dict[str, Any]]


@pytest.fixture(scope="module")
def prism() -> Iterator[str]:
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"prism-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120  # it parses a 13 MB description first
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"prism exited: {log.read_text()[-2000:]}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"prism did not listen within 120 s: {log.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group we started, by its id
        proc.wait(timeout=10)


@pytest.fixture
def recorded(prism: str) -> Iterator[tuple[str, list[Exchange]]]:
    """A recording relay in front of Prism: what was asked, what Prism said of it."""
    seen: list[Exchange] = []
    session = requests.Session()
    me: list[str] = []

    def relay(req: Request) -> Reply:
        if req.method == "GET" and re.search(r"/pulls\?(.*&)?head=", req.path):
            # "is there a PR for this branch yet?" — the description's example says yes; answer
            # no, so create_pull_request's POST is made (and validated) too.
            seen.append(Exchange(req.method, req.path.split("?")[0], 200, []))
            return Reply(200, [])
        headers = {k: v for k, v in req.headers.items() if k not in ("host", "content-length", "accept-encoding")}
        # PyGithub asks for GitHub's vendor media types (e.g. a preview type for check runs);
        # GitHub answers JSON to any of them, Prism only to the types its description lists.
        headers["accept"] = "application/json"
        resp = session.request(
            req.method, prism + req.path, headers=headers, data=req.raw or None, allow_redirects=False, timeout=30
        )
        violations = json.loads(resp.headers.get("sl-violations", "[]"))
        seen.append(Exchange(req.method, req.path.split("?")[0], resp.status_code, violations))
        # The description's examples link to https://api.github.com; PyGithub (rightly) follows
        # no link to another host than its base URL, so links point back here. Example `link`
        # headers (pagination of some other listing) are dropped: every listing is one page.
        kept = {
            k: v.replace("https://api.github.com", me[0])
            for k, v in resp.headers.items()
            if k.lower() in ("content-type", "location")
        }
        body = _unwrapped(resp.content).replace(b"https://api.github.com", me[0].encode())
        return Reply(resp.status_code, body, kept)

    with serve(relay) as s:
        me.append(s.url)
        yield s.url, seen


async def test_every_request_of_every_platform_method_is_one_github_documents(
    recorded: tuple[str, list[Exchange]], tmp_path: Path
) -> None:
    url, seen = recorded
    settings = GitHubSettings(token=SecretStr("ghp_contract_0123456789"), base_url=url, draft=True)
    gh = GitHubPlatform(RepoRef(platform="github", locator="octo/hello"), settings, bot_login="tamma-bot")
    pr = PullRequest(number=7, branch="tamma/issue-1", base="main", title="t", url="u", head_sha="a" * 40)
    report = TestReport(passed=False, command="pytest", exit_code=1, summary="1 failed")
    comment = ReviewComment(id=11, author="alice", body="why?", path="pager.py", line=3)
    calls: dict[str, Any] = {
        "get_issue": lambda: gh.get_issue(1),
        "open_issues": lambda: gh.open_issues(limit=5),
        "comment_issue": lambda: gh.comment_issue(1, "hello"),
        "comment_pull_request": lambda: gh.comment_pull_request(7, "CI still fails"),
        "default_branch": gh.default_branch,
        "upsert_progress": lambda: gh.upsert_progress(1, "progress"),
        "ensure_branch": lambda: gh.ensure_branch("tamma/issue-1", "main"),
        "get_pull_request": lambda: gh.get_pull_request(7),
        "find_pull_request": lambda: gh.find_pull_request("tamma/issue-1"),
        "create_pull_request": lambda: gh.create_pull_request("tamma/issue-1", "main", "Fix", "Fixes #1"),
        "report_tests": lambda: gh.report_tests("a" * 40, report),
        "ci_status": lambda: gh.ci_status(pr),
        "review_comments": lambda: gh.review_comments(pr),
        "reply_to_reviews": lambda: gh.reply_to_reviews(pr, [comment], "b" * 40),
        "merge_pull_request": lambda: gh.merge_pull_request(7),
    }
    made: dict[str, int] = {}
    refused: dict[str, str] = {}
    for name, call in calls.items():
        before = len(seen)
        # Prism's answers are random: a method may reject one (that is its job); only the
        # requests are under test here.
        try:
            await call()
        except TammaError as exc:
            refused[name] = exc.message
        made[name] = len(seen) - before
    silent = [n for n, c in made.items() if not c]
    assert not silent, f"methods that made no request: {silent} ({ {n: refused.get(n) for n in silent} })"
    rest = [e for e in seen if e.path != "/graphql"]  # GraphQL is not in the REST description
    documented = _operations()
    undocumented = [f"{e.method} {e.path}" for e in rest if not any(_matches(e, op) for op in documented)]
    # (Prism also checks its own answers against the description, and some of the description's
    # examples do not match its schemas: only violations located in the request are ours.)
    invalid = request_violations(rest)
    assert not invalid, f"requests GitHub's description refuses: {invalid}"
    assert not undocumented, f"requests to operations GitHub does not describe: {undocumented}"
    # the operations the workflow depends on were all exercised (the examples' own shas and
    # repository names come back in links, so any sha and repository count)
    paths = {f"{e.method} {e.path}" for e in rest}
    for needed in (
        r"GET /repos/[^/]+/[^/]+/commits/\w+/check-runs",
        r"GET /repos/[^/]+/[^/]+/commits/\w+/status",
        r"POST /repos/[^/]+/[^/]+/statuses/\w+",
        r"POST /repos/[^/]+/[^/]+/pulls",
        r"POST /repos/[^/]+/[^/]+/issues/\d+/comments",
        r"GET /repos/[^/]+/[^/]+/pulls/\d+/comments",
        r"PUT /repos/[^/]+/[^/]+/pulls/\d+/merge",
    ):
        assert any(re.fullmatch(needed, p) for p in paths), (needed, sorted(paths), refused)


def request_violations(exchanges: list[Exchange]) -> list[tuple[str, list[dict[str, Any]]]]:
    return [
        (f"{e.method} {e.path}", [v for v in e.violations if v["location"][:1] == ["request"]])
        for e in exchanges
        if any(v["severity"] == "Error" and v["location"][:1] == ["request"] for v in e.violations)
    ]


def test_a_request_github_would_refuse_is_caught(recorded: tuple[str, list[Exchange]]) -> None:
    """The check can fail: a comment without its required `body` is reported."""
    url, seen = recorded
    requests.post(f"{url}/repos/octo/hello/issues/1/comments", json={"text": "hi"}, timeout=30)
    [(where, violations)] = request_violations(seen)
    assert where == "POST /repos/octo/hello/issues/1/comments"
    assert any("required property 'body'" in v["message"] for v in violations)


def _unwrapped(body: bytes) -> bytes:
    """@octokit/openapi's examples carry extensions beside `value` ({"value": ..., "x-github-
    breaking-changes": ...}); Prism serves the whole object. The example is the `value`."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if isinstance(doc, dict) and "value" in doc and set(doc) <= {"value", "x-github-breaking-changes"}:
        return json.dumps(doc["value"]).encode()
    return body


def _operations() -> list[tuple[str, re.Pattern[str]]]:
    """(method, path pattern) of every operation in GitHub's description. A `{ref}` or `{path}`
    parameter may hold slashes (GitHub documents `heads/<branch>`); the others may not."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    out: list[tuple[str, re.Pattern[str]]] = []
    for template, item in spec["paths"].items():
        pattern = re.sub(
            r"\\\{(\w+)\\\}",
            lambda m: ".+" if m[1] in ("ref", "path") else "[^/]+",
            re.escape(template),
        )
        out += [
            (method.upper(), re.compile(pattern))
            for method in item
            if method in ("get", "post", "put", "patch", "delete")
        ]
    return out


def _matches(e: Exchange, op: tuple[str, re.Pattern[str]]) -> bool:
    return e.method == op[0] and op[1].fullmatch(e.path) is not None


def test_the_graphql_tamma_sends_is_valid_against_githubs_schema() -> None:
    from github.Requester import Requester
    from graphql import build_schema, parse, validate

    # GitHub's published SDL breaks a few of graphql-core's own schema rules (fields defined twice,
    # deprecations of interface fields): take the schema as GitHub serves it, check our queries.
    schema = build_schema(GRAPHQL_SCHEMA.read_text(encoding="utf-8"), assume_valid=True, assume_valid_sdl=True)
    assert not validate(schema, parse(_THREADS)), "the review-threads query"
    assert not validate(schema, parse(_QUEUE_ENTRY)), "the merge-queue entry query"
    assert not validate(schema, parse(_ENQUEUE)), "the enqueue mutation"
    # the mutation PyGithub builds to mark a draft ready (PullRequest.mark_ready_for_review)
    sent: list[str] = []

    def capture(self: Any, query: str, variables: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        sent.append(query)
        return {}, {"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": False}}}}

    original = Requester.graphql_query
    Requester.graphql_query = capture  # type: ignore[method-assign]
    try:
        from github import Auth, Github
        from github.PullRequest import PullRequest as GhPull

        requester = Github(auth=Auth.Token("x")).requester
        pull = GhPull(requester, {}, {"node_id": "PR_x", "number": 1, "draft": True}, completed=True)
        pull.mark_ready_for_review()
    finally:
        Requester.graphql_query = original  # type: ignore[method-assign]
    [mutation] = sent
    assert not validate(schema, parse(mutation)), mutation
    # and a query that is not valid is caught (the check can fail)
    assert validate(schema, parse(_THREADS.replace("fullDatabaseId", "noSuchField")))
