"""What a forge event means for Tamma: start a task, signal or cancel one, or nothing (and why).

Pure functions of (event name, payload, settings): no I/O, so every payload in the corpus can be
checked directly. An issue body or comment is untrusted: it can only trigger work through the
configured bot assignment, trigger label, or a `/tamma` command from an authorised author.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from tamma.config import WebhookSettings
from tamma.models import MAX_ISSUE, PlatformKind, RepoRef

Kind = Literal["start", "signal", "cancel", "ignore", "pong"]
_BRANCH = re.compile(r"^tamma/issue-(\d+)$")
_COMMAND = re.compile(r"^\s*/tamma\s+(approve|reject|retry|cancel|plan)\b[ \t]*(.*)$", re.MULTILINE | re.IGNORECASE)


class Action(BaseModel):
    kind: Kind
    reason: str
    repo: RepoRef | None = None
    issue: int | None = None
    signal: str | None = None
    by: str = ""
    text: str = ""
    rerun: bool = False


def _number(value: Any) -> int | None:
    """An issue number we can act on, or None (missing, not an int, out of range)."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ISSUE:
        return value
    return None


def ignore(reason: str) -> Action:
    return Action(kind="ignore", reason=reason)


def issue_from_branch(branch: str | None) -> int | None:
    m = _BRANCH.match(branch or "")
    return int(m.group(1)) if m else None


def allowed_repo(cfg: WebhookSettings, platform: PlatformKind, name: str) -> bool:
    return not cfg.repositories or f"{platform}:{name}" in cfg.repositories or name in cfg.repositories


def _command(body: str, bot: str) -> tuple[str, str] | None:
    m = _COMMAND.search(body or "")
    if m:
        return m.group(1).lower(), m.group(2).strip()
    if re.search(rf"(^|\s)@{re.escape(bot)}\b", body or "", re.IGNORECASE):
        return "plan", ""
    return None


def _for_command(repo: RepoRef, issue: int, cmd: str, rest: str, author: str) -> Action:
    base = {"repo": repo, "issue": issue, "by": author}
    if cmd == "approve":
        return Action(kind="signal", signal="approve_signal", text=rest, reason=f"/tamma approve by {author}", **base)
    if cmd == "reject":
        return Action(
            kind="signal",
            signal="reject_signal",
            text=rest or "rejected by comment",
            reason=f"/tamma reject by {author}",
            **base,
        )
    if cmd == "cancel":
        return Action(kind="cancel", reason=f"/tamma cancel by {author}", **base)
    return Action(kind="start", rerun=cmd == "retry", reason=f"/tamma {cmd} by {author}", **base)


def _nudge(repo: RepoRef, branch: str | None, what: str) -> Action:
    issue = issue_from_branch(branch)
    if issue is None:
        return ignore(f"{what} on branch {branch!r}, which is not a Tamma branch")
    return Action(kind="signal", signal="ci_event", repo=repo, issue=issue, reason=what, text=what)


# ---- GitHub ----------------------------------------------------------------------------------


def github_action(event: str, payload: dict[str, Any], cfg: WebhookSettings) -> Action:
    if event == "ping":
        return Action(kind="pong", reason="ping")
    name = (payload.get("repository") or {}).get("full_name")
    if not name:
        return ignore(f"{event[:64]} event carries no repository")
    if not allowed_repo(cfg, "github", name):
        return ignore(f"repository github:{name} is not in webhooks.repositories")
    repo = RepoRef(platform="github", locator=name)
    action = payload.get("action", "")
    handler = _GITHUB.get(event)
    if handler is None:
        return ignore(f"{event[:64]} events are not used by Tamma")
    return handler(repo, action, payload, cfg)


def _gh_issues(repo: RepoRef, action: str, p: dict[str, Any], cfg: WebhookSettings) -> Action:
    issue = p.get("issue") or {}
    number = _number(issue.get("number"))
    if number is None:
        return ignore("issues event without a usable issue number")
    bot = cfg.bot_login.lower()
    assignee = ((p.get("assignee") or {}).get("login") or "").lower()
    if action == "assigned":
        if assignee == bot:
            return Action(kind="start", repo=repo, issue=number, reason=f"assigned to {cfg.bot_login}")
        return ignore(f"issue assigned to {assignee or 'nobody'}, not to {cfg.bot_login}")
    if action == "labeled":
        label = (p.get("label") or {}).get("name", "")
        if label.lower() == cfg.trigger_label.lower():
            return Action(kind="start", repo=repo, issue=number, reason=f"labelled {label}")
        return ignore(f"label {label!r} is not the trigger label {cfg.trigger_label!r}")
    if action in ("closed", "deleted") or (action == "unassigned" and assignee == bot):
        return Action(
            kind="signal", signal="issue_changed", repo=repo, issue=number, text=action, reason=f"issue {action}"
        )
    if action == "edited":
        changed = sorted(k for k in (p.get("changes") or {}) if k in ("title", "body"))
        if changed:
            what = " and ".join(changed)
            return Action(
                kind="signal", signal="issue_changed", repo=repo, issue=number, text="edited", reason=f"{what} edited"
            )
        return ignore("issues.edited changed neither title nor body")
    return ignore(f"issues.{action} does not concern Tamma")


def _gh_comment(repo: RepoRef, action: str, p: dict[str, Any], cfg: WebhookSettings) -> Action:
    if action != "created":
        return ignore(f"issue_comment.{action} does not concern Tamma")
    comment, issue = p.get("comment") or {}, p.get("issue") or {}
    found = _command(comment.get("body", ""), cfg.bot_login)
    if found is None:
        return ignore("comment has no /tamma command and does not mention the bot")
    author = (comment.get("user") or {}).get("login", "")
    association = comment.get("author_association", "NONE")
    if author not in cfg.authorized_users and association not in cfg.authorized_associations:
        return ignore(f"{author} ({association}) is not authorised to command Tamma")
    if "pull_request" in issue:
        return ignore("commands on pull requests are not supported; comment on the issue")
    number = _number(issue.get("number"))
    if number is None:
        return ignore("comment event without a usable issue number")
    return _for_command(repo, number, *found, author)


def _gh_pull(repo: RepoRef, action: str, p: dict[str, Any], cfg: WebhookSettings) -> Action:
    branch = ((p.get("pull_request") or {}).get("head") or {}).get("ref")
    if action in ("closed", "reopened", "synchronize"):
        return _nudge(repo, branch, f"pull request {action}")
    return ignore(f"pull_request.{action} does not concern Tamma")


def _gh_review(repo: RepoRef, action: str, p: dict[str, Any], cfg: WebhookSettings) -> Action:
    branch = ((p.get("pull_request") or {}).get("head") or {}).get("ref")
    if action in ("submitted", "created", "edited", "dismissed"):
        return _nudge(repo, branch, f"review {action}")
    return ignore(f"review {action} does not concern Tamma")


Handler = Callable[[RepoRef, str, dict[str, Any], WebhookSettings], Action]


def _gh_check(key: str) -> Handler:
    def handler(repo: RepoRef, action: str, p: dict[str, Any], cfg: WebhookSettings) -> Action:
        obj = p.get(key) or {}
        branch = obj.get("head_branch") or (obj.get("check_suite") or {}).get("head_branch")
        if action != "completed":
            return ignore(f"{key}.{action}: waiting for completed")
        return _nudge(repo, branch, f"{key} completed: {obj.get('conclusion')}")

    return handler


def _gh_status(repo: RepoRef, action: str, p: dict[str, Any], cfg: WebhookSettings) -> Action:
    if p.get("state") == "pending":
        return ignore("status still pending")
    branches = [b.get("name") for b in p.get("branches") or []]
    branch = next((b for b in branches if issue_from_branch(b) is not None), branches[0] if branches else None)
    return _nudge(repo, branch, f"status {p.get('state')}")


_GITHUB: dict[str, Handler] = {
    "issues": _gh_issues,
    "issue_comment": _gh_comment,
    "pull_request": _gh_pull,
    "pull_request_review": _gh_review,
    "pull_request_review_comment": _gh_review,
    "check_suite": _gh_check("check_suite"),
    "check_run": _gh_check("check_run"),
    "workflow_run": _gh_check("workflow_run"),
    "status": _gh_status,
}


#: GitHub events a delivery may name that are worth their own metric label; any other name the
#: sender chooses is counted as "other", so a signed sender cannot grow the metrics registry.
GITHUB_EVENTS = frozenset({*_GITHUB, "ping", "push", "create", "delete", "label", "installation", "meta"})
GITLAB_EVENTS = frozenset(
    {"Issue Hook", "Note Hook", "Merge Request Hook", "Pipeline Hook", "Job Hook", "Push Hook", "Tag Push Hook"}
)

# ---- GitLab ----------------------------------------------------------------------------------


def gitlab_action(event: str, payload: dict[str, Any], cfg: WebhookSettings) -> Action:
    name = (payload.get("project") or {}).get("path_with_namespace")
    if not name:
        return ignore(f"{event} carries no project")
    if not allowed_repo(cfg, "gitlab", name):
        return ignore(f"repository gitlab:{name} is not in webhooks.repositories")
    repo = RepoRef(platform="gitlab", locator=name)
    oa = payload.get("object_attributes") or {}
    if event == "Issue Hook":
        return _gl_issue(repo, oa, payload, cfg)
    if event == "Note Hook":
        return _gl_note(repo, oa, payload, cfg)
    if event == "Merge Request Hook":
        return _nudge(repo, oa.get("source_branch"), f"merge request {oa.get('action')}")
    if event == "Pipeline Hook":
        if oa.get("status") in ("success", "failed", "canceled", "skipped"):
            return _nudge(repo, oa.get("ref"), f"pipeline {oa.get('status')}")
        return ignore(f"pipeline {oa.get('status')}: waiting for it to finish")
    return ignore(f"{event[:64]} is not used by Tamma")


def _gl_issue(repo: RepoRef, oa: dict[str, Any], p: dict[str, Any], cfg: WebhookSettings) -> Action:
    number, action = _number(oa.get("iid")), oa.get("action")
    if number is None:
        return ignore("Issue Hook without a usable iid")
    if action == "close":
        return Action(
            kind="signal", signal="issue_changed", repo=repo, issue=number, text="closed", reason="issue closed"
        )
    assignees = {a.get("username", "").lower() for a in p.get("assignees") or []}
    labels = {(lbl.get("title") or "").lower() for lbl in p.get("labels") or []}
    changes = p.get("changes") or {}
    bot = cfg.bot_login.lower()
    if action == "update" and "assignees" in changes:
        before = {a.get("username", "").lower() for a in (changes["assignees"] or {}).get("previous") or []}
        if bot in before and bot not in assignees:
            return Action(
                kind="signal",
                signal="issue_changed",
                repo=repo,
                issue=number,
                text="unassigned",
                reason="bot unassigned",
            )
    if action == "update" and not {"assignees", "labels"} & changes.keys():
        changed = sorted(k for k in changes if k in ("title", "description"))
        if changed:  # text edited, trigger untouched: the running task (if any) plans again
            what = " and ".join(changed)
            return Action(
                kind="signal", signal="issue_changed", repo=repo, issue=number, text="edited", reason=f"{what} edited"
            )
    if action in ("open", "reopen", "update"):
        if cfg.bot_login.lower() in assignees:
            return Action(kind="start", repo=repo, issue=number, reason=f"assigned to {cfg.bot_login}")
        if cfg.trigger_label.lower() in labels:
            return Action(kind="start", repo=repo, issue=number, reason=f"labelled {cfg.trigger_label}")
        return ignore(f"issue is neither assigned to {cfg.bot_login} nor labelled {cfg.trigger_label!r}")
    return ignore(f"Issue Hook action {action} does not concern Tamma")


def _gl_note(repo: RepoRef, oa: dict[str, Any], p: dict[str, Any], cfg: WebhookSettings) -> Action:
    kind = oa.get("noteable_type")
    if kind == "MergeRequest":
        return _nudge(repo, (p.get("merge_request") or {}).get("source_branch"), "merge request comment")
    if kind != "Issue":
        return ignore(f"comments on {kind} do not concern Tamma")
    found = _command(oa.get("note", ""), cfg.bot_login)
    if found is None:
        return ignore("comment has no /tamma command and does not mention the bot")
    author = (p.get("user") or {}).get("username", "")
    # GitLab note events carry no author role, so only the allowlist can authorise.
    if author not in cfg.authorized_users:
        return ignore(f"{author} is not in webhooks.authorized_users")
    number = _number((p.get("issue") or {}).get("iid"))
    if number is None:
        return ignore("Note Hook without a usable issue iid")
    return _for_command(repo, number, *found, author)
