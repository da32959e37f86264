"""The GitHub REST endpoints Tamma uses, with the request and response shapes of GitHub's
published API description: bearer/token auth and 401 "Bad credentials", `link` pagination with
`per_page`/`page`, `x-ratelimit-*` headers, 403/429 rate limits with `retry-after`, 404, 405
"not mergeable", 422 validation errors. Branches live in a real bare git repository."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from tests.standins.git_remote import BareRemote
from tests.standins.http import Reply, Request

_ids = itertools.count(1000)


@dataclass
class FakeGitHub:
    owner: str
    name: str
    remote: BareRemote
    token: str
    base: str = ""  # the server's URL, set once it listens
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # CI as a function of the head commit (check runs for a sha), for runs whose shas are not known
    # up front; job logs by Actions job id, served at a signed URL of their own (no auth there)
    ci: Callable[[str], list[dict[str, Any]]] | None = None
    job_logs: dict[int, bytes] = field(default_factory=dict)
    log_requests: list[Request] = field(default_factory=list)
    review_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    resolved: set[int] = field(default_factory=set)  # first-comment ids of resolved review threads
    graphql_error: Reply | None = None  # answer GraphQL with this instead (e.g. not enabled)
    log: list[tuple[str, str, Any]] = field(default_factory=list)
    inject: list[tuple[str, Reply]] = field(default_factory=list)  # (path regex, reply) served once
    crash_after: list[str] = field(default_factory=list)  # do the write, then answer 502 (once)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # GitHub App auth: (app id, its public key PEM, installation id); installation tokens it issued
    app: tuple[int, bytes, int] | None = None
    app_token_ttl_s: int = 3600
    installation_tokens: dict[str, float] = field(default_factory=dict)
    token_login: str = "tamma-bot"  # who GET /user says the token is; what it writes appears as
    app_slug: str = "tamma-app"  # an App's writes appear as "<slug>[bot]"
    actor: str = "tamma-bot"  # the author of the request being answered
    # branch protection on the base: approving reviews a merge needs (GitHub answers 405 until then)
    required_approvals: int = 0
    # a merge queue on the base (a ruleset): REST merges are refused; GraphQL enqueuePullRequest
    # queues the PR, and `land_queue()` merges what is queued (the queue's checks passed)
    merge_queue: bool = False
    queued: list[int] = field(default_factory=list)

    @property
    def full(self) -> str:
        return f"{self.owner}/{self.name}"

    def add_issue(self, number: int, title: str, body: str) -> None:
        self.issues[number] = {
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "user": {"login": "reporter"},
            "labels": [],
            "pull_request": None,
        }

    def land_queue(self) -> list[int]:
        """The merge queue's checks passed: merge what it holds, in order."""
        landed = []
        with self.lock:
            for number in self.queued:
                pull = self.pulls[number]
                sha = self.remote.merge(pull["head"], pull["base"], f"{pull['title']} (#{number})", squash=True)
                if sha is not None:
                    pull.update(
                        merged=True, state="closed", merge_commit_sha=sha, head_sha=self.remote.sha(pull["head"])
                    )
                    landed.append(number)
            self.queued.clear()
        return landed

    def calls(self, method: str | None = None) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.log if method is None or m == method]

    # ---- shapes ------------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.base}/repos/{self.full}{path}"

    def _user(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": 1, "type": "User", "url": f"{self.base}/users/{login}"}

    def _issue(self, i: dict[str, Any]) -> dict[str, Any]:
        n = i["number"]
        return {
            "id": n,
            "number": n,
            "title": i["title"],
            "body": i["body"],
            "state": i["state"],
            "user": self._user(i["user"]["login"]),
            "labels": [{"name": x} if isinstance(x, str) else x for x in i["labels"]],
            "assignees": [self._user(a) for a in i.get("assignees", [])],
            "url": self._api(f"/issues/{n}"),
            "html_url": f"https://github.test/{self.full}/issues/{n}",
            "comments_url": self._api(f"/issues/{n}/comments"),
            "pull_request": i.get("pull_request"),
        }

    def _comment(self, c: dict[str, Any]) -> dict[str, Any]:
        return {**c, "url": self._api(f"/issues/comments/{c['id']}"), "user": self._user(c["user"])}

    def _pull(self, p: dict[str, Any]) -> dict[str, Any]:
        head_sha = self.remote.sha(p["head"]) or p.get("head_sha", "")
        n = p["number"]
        return {
            "id": n,
            "number": n,
            "state": p["state"],
            "title": p["title"],
            "body": p["body"],
            "url": self._api(f"/pulls/{n}"),
            "html_url": f"https://github.test/{self.full}/pull/{n}",
            "head": {"ref": p["head"], "sha": head_sha, "label": f"{self.owner}:{p['head']}"},
            "base": {"ref": p["base"], "sha": self.remote.sha(p["base"])},
            "merged": p["merged"],
            "mergeable": p.get("mergeable", True),
            "draft": p.get("draft", False),
            "node_id": f"PR_node{n}",
            "merge_commit_sha": p.get("merge_commit_sha"),
        }

    # ---- protocol ----------------------------------------------------------------------------

    def __call__(self, req: Request) -> Reply:
        with self.lock:
            url = urlsplit(req.path)
            body = req.json if req.raw else None
            self.log.append((req.method, req.path, body))
            auth = req.headers.get("authorization", "")
            if m := re.fullmatch(r"/_signed_logs/(\d+)", url.path):
                return self._log_blob(req, int(m[1]))
            if self.app and (m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", url.path)):
                return self._installation_token(req.method, int(m[1]), auth)
            if self.app and url.path == "/app" and req.method == "GET":
                return self._the_app(auth)
            if auth in (f"token {self.token}", f"Bearer {self.token}"):
                self.actor = self.token_login
            elif self._installation_ok(auth):
                self.actor = f"{self.app_slug}[bot]"
            else:
                return Reply(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            if url.path == "/user" and req.method == "GET":
                if self.actor.endswith("[bot]"):  # an installation token is no user
                    return Reply(403, {"message": "Resource not accessible by integration"})
                return Reply(200, self._user(self.actor))
            for i, (pattern, reply) in enumerate(self.inject):
                if re.search(pattern, f"{req.method} {url.path}"):
                    del self.inject[i]
                    return reply
            if url.path == "/graphql" and req.method == "POST":
                return self.graphql_error or self._graphql(body)
            reply = self._route(req.method, url.path, parse_qs(url.query), body)
            for i, pattern in enumerate(self.crash_after):
                if re.search(pattern, f"{req.method} {url.path}"):
                    del self.crash_after[i]
                    return Reply(502, {"message": "Server Error"})
            reply.headers.setdefault("x-ratelimit-limit", "5000")
            reply.headers.setdefault("x-ratelimit-remaining", "4999")
            reply.headers.setdefault("x-ratelimit-reset", str(int(time.time()) + 3600))
            return reply

    def _graphql(self, body: dict[str, Any]) -> Reply:
        """The GraphQL Tamma sends: a pull request's review threads, 100 a page, with whether each
        is resolved and its first comment's REST id (`fullDatabaseId`, a BigInt sent as a string);
        and the mutation that marks a draft pull request ready for review."""
        query, v = body.get("query", ""), body.get("variables") or {}
        if "markPullRequestReadyForReview" in query:
            node = (v.get("input") or {}).get("pullRequestId")
            pull = next((x for n, x in self.pulls.items() if f"PR_node{n}" == node), None)
            if pull is None:
                return Reply(200, {"errors": [{"type": "NOT_FOUND", "message": f"Could not resolve to a node {node}"}]})
            pull["draft"] = False
            ready = {"clientMutationId": None, "pullRequest": {"isDraft": False}}
            return Reply(200, {"data": {"markPullRequestReadyForReview": ready}})
        if "enqueuePullRequest" in query:
            node = (v.get("input") or {}).get("pullRequestId")
            number = next((n for n in self.pulls if f"PR_node{n}" == node), None)
            if number is None or not self.merge_queue:
                return Reply(
                    200, {"errors": [{"type": "UNPROCESSABLE", "message": "Pull request is not in a mergeable state"}]}
                )
            expected = (v.get("input") or {}).get("expectedHeadOid")
            if expected and expected != self.remote.sha(self.pulls[number]["head"]):
                return Reply(200, {"errors": [{"type": "UNPROCESSABLE", "message": "Head ref is out of date"}]})
            if number in self.queued:
                return Reply(200, {"errors": [{"type": "UNPROCESSABLE", "message": "Pull request is already queued"}]})
            self.queued.append(number)
            entry = {"id": f"MQE_{number}", "position": len(self.queued), "state": "QUEUED"}
            return Reply(200, {"data": {"enqueuePullRequest": {"mergeQueueEntry": entry}}})
        if "mergeQueueEntry" in query and "pullRequest(number" in query:
            if (v.get("owner"), v.get("name")) != (self.owner, self.name):
                return Reply(200, {"errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a Repository"}]})
            number = int(v["number"])
            entry = None
            if number in self.queued:
                entry = {"id": f"MQE_{number}", "position": self.queued.index(number) + 1, "state": "QUEUED"}
            pr = {"id": f"PR_node{number}", "merged": self.pulls[number]["merged"], "mergeQueueEntry": entry}
            return Reply(200, {"data": {"repository": {"pullRequest": pr}}})
        if "reviewThreads" not in query or "isResolved" not in query or "fullDatabaseId" not in query:
            return Reply(200, {"errors": [{"type": "INVALID", "message": "unexpected query"}]})
        if (v.get("owner"), v.get("name")) != (self.owner, self.name):
            return Reply(200, {"errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a Repository"}]})
        roots = [c for c in self.review_comments.get(int(v["number"]), []) if not c.get("in_reply_to_id")]
        start = int(v.get("after") or 0)
        page = roots[start : start + 100]
        nodes = [
            {"isResolved": c["id"] in self.resolved, "comments": {"nodes": [{"fullDatabaseId": str(c["id"])}]}}
            for c in page
        ]
        more = start + 100 < len(roots)
        info = {"hasNextPage": more, "endCursor": str(start + 100) if more else None}
        threads = {"pageInfo": info, "nodes": nodes}
        return Reply(200, {"data": {"repository": {"pullRequest": {"reviewThreads": threads}}}})

    def _the_app(self, auth: str) -> Reply:
        """GET /app, authenticated as the App itself (its JWT): who the App is."""
        assert self.app is not None
        try:
            jwt.decode(auth.removeprefix("Bearer "), self.app[1], algorithms=["RS256"])
        except jwt.PyJWTError as exc:
            return Reply(401, {"message": f"A JSON web token could not be decoded ({exc})"})
        return Reply(200, {"id": self.app[0], "slug": self.app_slug, "name": "Tamma", "owner": self._user(self.owner)})

    def _installation_token(self, method: str, installation: int, auth: str) -> Reply:
        """POST /app/installations/{id}/access_tokens: the App proves itself with an RS256 JWT
        (iss = app id, at most 10 minutes long) and gets an installation token."""
        assert self.app is not None
        app_id, public_key, installation_id = self.app
        if method != "POST" or installation != installation_id:
            return Reply(404, {"message": "Not Found"})
        try:
            claims = jwt.decode(auth.removeprefix("Bearer "), public_key, algorithms=["RS256"])
        except jwt.PyJWTError as exc:
            return Reply(401, {"message": f"A JSON web token could not be decoded ({exc})"})
        if str(claims.get("iss")) != str(app_id) or claims["exp"] - claims["iat"] > 600:
            return Reply(401, {"message": "'Issuer' claim ('iss') must be an Integer"})
        token = f"ghs_installation{next(_ids)}"
        expires = time.time() + self.app_token_ttl_s
        self.installation_tokens[token] = expires
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        return Reply(201, {"token": token, "expires_at": stamp, "permissions": {"issues": "write"}})

    def _pull_as_issue(self, n: int) -> dict[str, Any] | None:
        pull = self.pulls.get(n)
        if pull is None:
            return None
        return {
            "number": n,
            "title": pull["title"],
            "body": pull["body"],
            "state": "closed" if pull["state"] == "closed" else "open",
            "user": {"login": "tamma-bot"},
            "labels": [],
            "pull_request": {"url": self._api(f"/pulls/{n}")},
        }

    def _check_run(self, sha: str, run: dict[str, Any]) -> dict[str, Any]:
        """A check run with every field GitHub sends (a test gives only what it is about)."""
        full = {
            "head_sha": sha,
            "url": self._api(f"/check-runs/{run['id']}"),
            "html_url": f"https://github.test/{self.full}/runs/{run['id']}",
            "details_url": "",
            "output": {"title": None, "summary": None, "text": None, "annotations_count": 0},
            "app": {"id": 1, "slug": "some-ci", "name": "Some CI"},
        }
        return {**full, **run}

    def _log_blob(self, req: Request, job: int) -> Reply:
        """The log store behind a job's /logs redirect: plain text, no auth, `Range: bytes=-N`."""
        self.log_requests.append(req)
        data = self.job_logs.get(job)
        if data is None:
            return Reply(404, {"message": "BlobNotFound"})
        if m := re.fullmatch(r"bytes=-(\d+)", req.headers.get("range", "")):
            return Reply(206, data[-int(m[1]) :], {"content-range": f"bytes */{len(data)}"})
        return Reply(200, data)

    def _installation_ok(self, auth: str) -> bool:
        token = auth.removeprefix("token ").removeprefix("Bearer ")
        return self.installation_tokens.get(token, 0) > time.time()

    def _page(self, items: list[Any], path: str, q: dict[str, list[str]]) -> Reply:
        per = int(q.get("per_page", ["30"])[0])
        page = int(q.get("page", ["1"])[0])
        chunk = items[(page - 1) * per : page * per]
        headers = {}
        if page * per < len(items):
            rest = "&".join(f"{k}={v[0]}" for k, v in q.items() if k not in ("page",))
            headers["link"] = f'<{self.base}{path}?{rest}&page={page + 1}>; rel="next"'
        return Reply(200, chunk, headers)

    def _route(self, method: str, path: str, q: dict[str, list[str]], body: Any) -> Reply:
        prefix = f"/repos/{self.full}"
        if not path.startswith(prefix):
            return Reply(404, {"message": "Not Found"})
        p = path[len(prefix) :]
        if p == "" and method == "GET":
            return Reply(
                200,
                {
                    "id": 1,
                    "name": self.name,
                    "full_name": self.full,
                    "default_branch": "main",
                    "url": self._api(""),
                    "owner": self._user(self.owner),
                },
            )
        if p == "/issues" and method == "GET":  # GitHub lists pull requests among issues
            state = q.get("state", ["open"])[0]
            found = [i for _, i in sorted(self.issues.items(), reverse=True) if state == "all" or i["state"] == state]
            return self._page([self._issue(i) for i in found], path, q)
        if m := re.fullmatch(r"/issues/(\d+)", p):
            issue = self.issues.get(int(m[1])) or self._pull_as_issue(int(m[1]))
            return Reply(200, self._issue(issue)) if issue else Reply(404, {"message": "Not Found"})
        if m := re.fullmatch(r"/issues/(\d+)/comments", p):
            n = int(m[1])
            if n not in self.issues and n not in self.pulls:  # a pull request is an issue too
                return Reply(404, {"message": "Not Found"})
            if method == "POST":
                c = {"id": next(_ids), "body": body["body"], "user": self.actor}
                self.comments.setdefault(n, []).append(c)
                return Reply(201, self._comment(c))
            return self._page([self._comment(c) for c in self.comments.get(n, [])], path, q)
        if (m := re.fullmatch(r"/issues/comments/(\d+)", p)) and method == "PATCH":
            for cs in self.comments.values():
                for c in cs:
                    if c["id"] == int(m[1]):
                        c["body"] = body["body"]
                        return Reply(200, self._comment(c))
            return Reply(404, {"message": "Not Found"})
        if m := re.fullmatch(r"/git/ref/heads/(.+)", p):
            sha = self.remote.sha(m[1])
            if sha is None:
                return Reply(404, {"message": "Not Found"})
            return Reply(
                200,
                {
                    "ref": f"refs/heads/{m[1]}",
                    "url": self._api(f"/git/refs/heads/{m[1]}"),
                    "object": {"sha": sha, "type": "commit", "url": self._api(f"/git/commits/{sha}")},
                },
            )
        if p == "/git/refs" and method == "POST":
            branch = body["ref"].removeprefix("refs/heads/")
            if self.remote.sha(branch):
                return Reply(422, {"message": "Reference already exists"})
            self.remote.create_branch(branch, body["sha"])
            return Reply(201, {"ref": body["ref"], "object": {"sha": body["sha"], "type": "commit"}})
        if m := re.fullmatch(r"/branches/(.+)", p):
            sha = self.remote.sha(m[1])
            if sha is None:
                return Reply(404, {"message": "Branch not found"})
            return Reply(200, {"name": m[1], "commit": {"sha": sha, "url": self._api(f"/commits/{sha}")}})
        if p == "/pulls" and method == "GET":
            head = q.get("head", [""])[0].split(":")[-1]
            state = q.get("state", ["open"])[0]
            found = [
                self._pull(x)
                for x in self.pulls.values()
                if (not head or x["head"] == head) and (state == "all" or x["state"] == state)
            ]
            return self._page(found, path, q)
        if p == "/pulls" and method == "POST":
            if any(x["head"] == body["head"] and x["state"] == "open" for x in self.pulls.values()):
                return Reply(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": f"A pull request already exists for {self.owner}:{body['head']}.",
                            }
                        ],
                    },
                )
            if not self.remote.sha(body["head"]):
                return Reply(422, {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]})
            n = max([*self.issues, *self.pulls, 0]) + 1
            self.pulls[n] = {
                "number": n,
                "state": "open",
                "title": body["title"],
                "body": body.get("body", ""),
                "head": body["head"],
                "base": body["base"],
                "merged": False,
                "draft": body.get("draft", False),
            }
            return Reply(201, self._pull(self.pulls[n]))
        if m := re.fullmatch(r"/pulls/(\d+)", p):
            pull = self.pulls.get(int(m[1]))
            return Reply(200, self._pull(pull)) if pull else Reply(404, {"message": "Not Found"})
        if (m := re.fullmatch(r"/pulls/(\d+)/merge", p)) and method == "PUT":
            pull = self.pulls[int(m[1])]
            if pull["merged"]:
                return Reply(405, {"message": "Pull Request is not mergeable"})
            if pull.get("draft"):
                return Reply(405, {"message": "Pull Request is still a draft"})
            if self.merge_queue:  # what GitHub answers when a ruleset requires the merge queue
                return Reply(405, {"message": "Changes must be made through the merge queue"})
            approved = sum(r.get("state") == "APPROVED" for r in self.reviews.get(pull["number"], []))
            if approved < self.required_approvals:
                need = self.required_approvals
                return Reply(
                    405,
                    {"message": f"At least {need} approving review{'s are' if need > 1 else ' is'} required by "
                     "reviewers with write access."},
                )  # fmt: skip
            wanted = (body or {}).get("sha")
            if wanted and wanted != self.remote.sha(pull["head"]):  # as GitHub documents it
                return Reply(409, {"message": "Head branch was modified. Review and try the merge again."})
            sha = self.remote.merge(
                pull["head"],
                pull["base"],
                f"{pull['title']} (#{pull['number']})",
                squash=(body or {}).get("merge_method") == "squash",
            )
            if sha is None:
                pull["mergeable"] = False
                return Reply(405, {"message": "Pull Request is not mergeable"})
            pull.update(merged=True, state="closed", merge_commit_sha=sha, head_sha=self.remote.sha(pull["head"]))
            return Reply(200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"})
        if (m := re.fullmatch(r"/pulls/(\d+)/comments/(\d+)/replies", p)) and method == "POST":
            thread = self.review_comments.get(int(m[1]), [])
            root = next((c for c in thread if c["id"] == int(m[2])), None)
            if root is None or root.get("in_reply_to_id"):  # GitHub: replies go to the top-level comment
                return Reply(404, {"message": "Not Found"})
            c = {**root, "id": next(_ids), "body": body["body"], "user": self.actor, "in_reply_to_id": root["id"]}
            c["author_association"] = "NONE"  # an App's bot user is no collaborator
            thread.append(c)
            return Reply(201, {**c, "url": self._api(f"/pulls/comments/{c['id']}"), "user": self._user(c["user"])})
        if m := re.fullmatch(r"/pulls/(\d+)/comments", p):
            return self._page(
                [
                    # author_association is on every comment GitHub returns; NONE unless the test says
                    {
                        "author_association": "NONE",
                        **c,
                        "url": self._api(f"/pulls/comments/{c['id']}"),
                        "user": self._user(c["user"]),
                    }
                    for c in self.review_comments.get(int(m[1]), [])
                ],
                path,
                q,
            )
        if m := re.fullmatch(r"/pulls/(\d+)/reviews", p):
            return self._page(
                [
                    {"author_association": "NONE", **r, "user": self._user(r["user"])}
                    for r in self.reviews.get(int(m[1]), [])
                ],
                path,
                q,
            )
        if m := re.fullmatch(r"/commits/([0-9a-f]{40})", p):
            return Reply(200, {"sha": m[1], "url": self._api(f"/commits/{m[1]}"), "commit": {"message": ""}})
        if (m := re.fullmatch(r"/statuses/([0-9a-f]{40})", p)) and method == "POST":
            entry = {
                "context": body.get("context", "default"),
                "state": body["state"],
                "description": body.get("description", ""),
            }
            lst = [s for s in self.statuses.get(m[1], []) if s["context"] != entry["context"]]
            self.statuses[m[1]] = [*lst, entry]
            return Reply(201, {**entry, "id": next(_ids), "url": self._api(f"/statuses/{m[1]}")})
        if m := re.fullmatch(r"/commits/([0-9a-f]{40})/status", p):
            # The combined status: the latest status of each context, one page of them (per_page,
            # default 30, at most 100), total_count over all, and the overall state.
            sts = self.statuses.get(m[1], [])
            overall = (
                "failure"
                if any(s["state"] in ("failure", "error") for s in sts)
                else ("pending" if any(s["state"] == "pending" for s in sts) or not sts else "success")
            )
            per = min(int(q.get("per_page", ["30"])[0]), 100)
            page = int(q.get("page", ["1"])[0])
            shown = sts[(page - 1) * per : page * per]
            return Reply(200, {"state": overall, "statuses": shown, "sha": m[1], "total_count": len(sts)})
        if m := re.fullmatch(r"/commits/([0-9a-f]{40})/statuses", p):
            return self._page(list(reversed(self.statuses.get(m[1], []))), path, q)  # newest first
        if m := re.fullmatch(r"/commits/([0-9a-f]{40})/check-runs", p):
            runs = [self._check_run(m[1], r) for r in (self.ci(m[1]) if self.ci else self.check_runs.get(m[1], []))]
            return Reply(200, {"total_count": len(runs), "check_runs": runs})
        if (m := re.fullmatch(r"/actions/jobs/(\d+)/logs", p)) and method == "GET":
            if int(m[1]) not in self.job_logs:
                return Reply(404, {"message": "Not Found"})
            return Reply(302, b"", {"location": f"{self.base}/_signed_logs/{m[1]}"})
        return Reply(404, {"message": f"stand-in has no route {method} {p}"})


def rate_limited(reset_in_s: int = 1) -> Reply:
    return Reply(
        403,
        {
            "message": "API rate limit exceeded for installation ID 1.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        },
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + reset_in_s)},
    )


def secondary_limit(retry_after_s: int = 1) -> Reply:
    return Reply(
        403,
        {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
        {"retry-after": str(retry_after_s)},
    )


__all__ = ["FakeGitHub", "json", "rate_limited", "secondary_limit"]
