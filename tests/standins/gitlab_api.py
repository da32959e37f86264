"""The GitLab REST v4 endpoints Tamma uses, shaped as GitLab documents them: PRIVATE-TOKEN auth
and 401, URL-encoded project paths with namespaces, `link`/`x-next-page` pagination, 429 with
`Retry-After`/`RateLimit-Reset`, 404 messages, 400 "Branch already exists", 409 for a second open
merge request, 405/406 for merges that cannot happen. Branches live in a real bare repository."""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.standins.git_remote import BareRemote
from tests.standins.http import Reply, Request

_ids = itertools.count(5000)


@dataclass
class FakeGitLab:
    path: str  # group/sub/project
    remote: BareRemote
    token: str
    base: str = ""
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    mrs: dict[int, dict[str, Any]] = field(default_factory=dict)
    mr_discussions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    job_traces: dict[int, bytes] = field(default_factory=dict)  # CI job id -> its log (trace)
    mr_notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    token_login: str = "tamma-bot"  # the token's user; what it writes appears as
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level (inherited included)
    approvals_left: int = 0
    log: list[tuple[str, str, Any]] = field(default_factory=list)
    inject: list[tuple[str, Reply]] = field(default_factory=list)
    crash_after: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_issue(self, iid: int, title: str, body: str) -> None:
        self.issues[iid] = {
            "iid": iid,
            "id": iid + 100,
            "title": title,
            "description": body,
            "state": "opened",
            "author": {"username": "reporter"},
            "labels": [],
            "web_url": f"https://gitlab.test/{self.path}/-/issues/{iid}",
        }

    def calls(self, method: str | None = None) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.log if method is None or m == method]

    def _mr(self, m: dict[str, Any]) -> dict[str, Any]:
        return {
            **m,
            "id": m["iid"] + 900,
            "sha": self.remote.sha(m["source_branch"]) or m.get("sha"),
            "web_url": f"https://gitlab.test/{self.path}/-/merge_requests/{m['iid']}",
        }

    def __call__(self, req: Request) -> Reply:
        with self.lock:
            url = urlsplit(req.path)
            body = req.json if req.raw else None
            self.log.append((req.method, req.path, body))
            if req.headers.get("private-token") != self.token:
                return Reply(401, {"message": "401 Unauthorized"})
            for i, (pattern, reply) in enumerate(self.inject):
                if re.search(pattern, f"{req.method} {url.path}"):
                    del self.inject[i]
                    return reply
            reply = self._route(req.method, url.path, parse_qs(url.query), body or {})
            for i, pattern in enumerate(self.crash_after):
                if re.search(pattern, f"{req.method} {url.path}"):
                    del self.crash_after[i]
                    return Reply(502, {"message": "502 Bad Gateway"})
            return reply

    def _page(self, items: list[Any], path: str, q: dict[str, list[str]]) -> Reply:
        per = int(q.get("per_page", ["20"])[0])
        page = int(q.get("page", ["1"])[0])
        headers = {"x-page": str(page), "x-per-page": str(per), "x-total": str(len(items))}
        if page * per < len(items):
            rest = "&".join(f"{k}={quote(v[0])}" for k, v in q.items() if k != "page")
            headers["x-next-page"] = str(page + 1)
            headers["link"] = f'<{self.base}{path}?{rest}&page={page + 1}>; rel="next"'
        return Reply(200, items[(page - 1) * per : page * per], headers)

    def _notes(
        self,
        store: dict[int, list[dict[str, Any]]],
        iid: int,
        method: str,
        body: Any,
        path: str,
        q: dict[str, list[str]],
    ) -> Reply:
        """An issue's or a merge request's notes: list (paginated) or add one as the token's user."""
        if method == "POST":
            note = {"id": next(_ids), "body": body["body"], "author": {"username": self.token_login}, "system": False}
            store.setdefault(iid, []).append(note)
            return Reply(201, note)
        return self._page(store.get(iid, []), path, q)

    def _route(self, method: str, raw_path: str, q: dict[str, list[str]], body: dict[str, Any]) -> Reply:
        prefix = f"/api/v4/projects/{quote(self.path, safe='')}"
        if raw_path == "/api/v4/user" and method == "GET":
            return Reply(200, {"id": 7, "username": self.token_login, "bot": self.token_login.startswith("project_")})
        if not raw_path.startswith(prefix):
            return Reply(404, {"message": "404 Project Not Found"})
        p = raw_path[len(prefix) :]
        if p == "":
            return Reply(
                200,
                {
                    "id": 42,
                    "path_with_namespace": self.path,
                    "default_branch": "main",
                    "web_url": f"https://gitlab.test/{self.path}",
                },
            )
        if (m := re.fullmatch(r"/members/all/(\d+)", p)) and method == "GET":
            level = self.members.get(int(m[1]))
            if level is None:
                return Reply(404, {"message": "404 Not found"})
            return Reply(200, {"id": int(m[1]), "username": f"user{m[1]}", "access_level": level, "state": "active"})
        if p == "/issues" and method == "GET":
            state = q.get("state", ["all"])[0]
            found = [i for _, i in sorted(self.issues.items(), reverse=True) if state == "all" or i["state"] == state]
            return self._page(found, raw_path, q)
        if m := re.fullmatch(r"/issues/(\d+)", p):
            issue = self.issues.get(int(m[1]))
            return Reply(200, issue) if issue else Reply(404, {"message": "404 Not found"})
        if m := re.fullmatch(r"/issues/(\d+)/notes", p):
            return self._notes(self.notes, int(m[1]), method, body, raw_path, q)
        if (m := re.fullmatch(r"/issues/(\d+)/notes/(\d+)", p)) and method == "PUT":
            for note in self.notes.get(int(m[1]), []):
                if note["id"] == int(m[2]):
                    note["body"] = body["body"]
                    return Reply(200, note)
            return Reply(404, {"message": "404 Not found"})
        if m := re.fullmatch(r"/repository/branches/(.+)", p):
            sha = self.remote.sha(unquote(m[1]))
            if sha is None:
                return Reply(404, {"message": "404 Branch Not Found"})
            return Reply(200, {"name": unquote(m[1]), "commit": {"id": sha}})
        if p == "/repository/branches" and method == "POST":
            branch, ref = body.get("branch") or q["branch"][0], body.get("ref") or q["ref"][0]
            if self.remote.sha(branch):
                return Reply(400, {"message": "Branch already exists"})
            sha = self.remote.sha(ref)
            if sha is None:
                return Reply(400, {"message": "Invalid reference name"})
            self.remote.create_branch(branch, sha)
            return Reply(201, {"name": branch, "commit": {"id": sha}})
        if p == "/merge_requests" and method == "GET":
            src = q.get("source_branch", [None])[0]
            state = q.get("state", ["all"])[0]
            found = [
                self._mr(x)
                for x in self.mrs.values()
                if (src is None or x["source_branch"] == src) and state in ("all", x["state"])
            ]
            return self._page(found, raw_path, q)
        if p == "/merge_requests" and method == "POST":
            if any(x["source_branch"] == body["source_branch"] and x["state"] == "opened" for x in self.mrs.values()):
                return Reply(409, {"message": ["Another open merge request already exists for this source branch"]})
            iid = max([0, *self.mrs]) + 1
            self.mrs[iid] = {
                "iid": iid,
                "state": "opened",
                "title": body["title"],
                "description": body.get("description", ""),
                "source_branch": body["source_branch"],
                "target_branch": body["target_branch"],
                "merge_commit_sha": None,
                "squash_commit_sha": None,
            }
            return Reply(201, self._mr(self.mrs[iid]))
        if m := re.fullmatch(r"/merge_requests/(\d+)", p):
            mr = self.mrs.get(int(m[1]))
            if mr and method == "PUT":  # an edit: the fields python-gitlab's save() sends
                mr.update({k: v for k, v in body.items() if k in ("title", "description")})
            return Reply(200, self._mr(mr)) if mr else Reply(404, {"message": "404 Not found"})
        if m := re.fullmatch(r"/merge_requests/(\d+)/discussions/([0-9a-z]+)(/notes)?", p):
            found = next((d for d in self.mr_discussions.get(int(m[1]), []) if d["id"] == m[2]), None)
            if found is None:
                return Reply(404, {"message": "404 Discussion Not Found"})
            if m[3] and method == "POST":
                n = {"id": next(_ids), "body": body["body"], "author": {"username": self.token_login}, "system": False}
                found["notes"].append(n)
                return Reply(201, n)
            return Reply(200, found)
        if m := re.fullmatch(r"/merge_requests/(\d+)/discussions", p):
            return self._page(self.mr_discussions.get(int(m[1]), []), raw_path, q)
        if re.fullmatch(r"/merge_requests/(\d+)/approvals", p):
            return Reply(
                200,
                {
                    "approvals_required": self.approvals_left,
                    "approvals_left": self.approvals_left,
                    "approved": self.approvals_left == 0,
                },
            )
        if (m := re.fullmatch(r"/merge_requests/(\d+)/merge", p)) and method == "PUT":
            mr = self.mrs[int(m[1])]
            if str(mr["title"]).startswith("Draft:"):  # GitLab does not merge a draft
                return Reply(405, {"message": "405 Method Not Allowed"})
            if mr["state"] != "opened":
                return Reply(405, {"message": "405 Method Not Allowed"})
            squash = str(body.get("squash", q.get("squash", [""])[0])).lower() == "true"
            wanted = body.get("sha") or q.get("sha", [""])[0]
            if wanted and wanted != self.remote.sha(mr["source_branch"]):  # as GitLab documents it
                return Reply(409, {"message": "SHA does not match HEAD of source branch"})
            sha = self.remote.merge(mr["source_branch"], mr["target_branch"], mr["title"], squash=squash)
            if sha is None:
                return Reply(406, {"message": "Branch cannot be merged"})
            mr.update(
                state="merged",
                sha=self.remote.sha(mr["source_branch"]),
                **({"squash_commit_sha": sha} if squash else {"merge_commit_sha": sha}),
            )
            return Reply(200, self._mr(mr))
        if (m := re.fullmatch(r"/statuses/([0-9a-f]{40})", p)) and method == "POST":
            entry = {
                "id": next(_ids),
                "name": body.get("name", "default"),
                "status": body["state"],
                "description": body.get("description", ""),
                "sha": m[1],
            }
            self.statuses[m[1]] = [s for s in self.statuses.get(m[1], []) if s["name"] != entry["name"]] + [entry]
            return Reply(201, entry)
        if m := re.fullmatch(r"/repository/commits/([0-9a-f]{40})/statuses", p):
            return self._page(self.statuses.get(m[1], []), raw_path, q)
        if (m := re.fullmatch(r"/jobs/(\d+)/trace", p)) and method == "GET":
            trace = self.job_traces.get(int(m[1]))
            return Reply(200, trace) if trace is not None else Reply(404, {"message": "404 Job Not Found"})
        if m := re.fullmatch(r"/merge_requests/(\d+)/notes", p):
            if int(m[1]) not in self.mrs:
                return Reply(404, {"message": "404 Not found"})
            return self._notes(self.mr_notes, int(m[1]), method, body, raw_path, q)
        return Reply(404, {"message": f"stand-in has no route {method} {p}"})


def rate_limited(reset_in_s: int = 1) -> Reply:
    return Reply(
        429,
        {"message": "429 Too Many Requests"},
        {"Retry-After": str(reset_in_s), "RateLimit-Reset": str(int(time.time()) + reset_in_s)},
    )
