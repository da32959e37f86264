"""What the GitHub and GitLab platforms share: git auth kept out of URLs, marked comments,
CI roll-up, and the branch naming that ties a forge event back to its issue."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import requests

from tamma.models import CIStatus, ReviewComment

PROGRESS_MARK = "<!-- tamma:progress -->"
#: every comment Tamma writes carries a hidden marker that starts so (progress, comment, reply)
OWN_MARK = "<!-- tamma:"
#: failing checks handed to the agent at most, and the most of a job's log each carries
MAX_FAILURES = 5
LOG_TAIL_CHARS = 4000
#: the most of a log read from the forge to find its tail (logs can be gigabytes)
LOG_READ_BYTES = 8 * 1024 * 1024
T = TypeVar("T")


def find_or_create(find: Callable[[], T | None], create: Callable[[], T], raced: Callable[[Exception], bool]) -> T:
    """The idempotent write behind every forge step: return what an earlier attempt made; else
    make it; if the forge answers that it exists already (`raced`), a racing attempt made it, so
    look again and return that."""
    found = find()
    if found is not None:
        return found
    try:
        return create()
    except Exception as exc:
        if raced(exc) and (again := find()) is not None:
            return again
        raise


def comment_mark(body: str) -> str:
    """A hidden marker that identifies a comment by its content, so a retried post is skipped."""
    return f"<!-- tamma:{hashlib.sha256(body.encode()).hexdigest()[:16]} -->"


def reply_mark(thread: int | str, commit: str) -> str:
    return f"<!-- tamma:reply:{thread}:{commit[:12]} -->"


def reply_text(commit: str, thread: int | str) -> str:
    return f"Addressed in {commit[:10]}.\n\n{reply_mark(thread, commit)}"


def threads_of(comments: list[ReviewComment]) -> dict[int, ReviewComment]:
    """The first comment of each thread the feedback touched (line comments only; a review's own
    body has no thread to answer in)."""
    roots: dict[int, ReviewComment] = {}
    for c in comments:
        if c.id > 0 and (c.path or c.discussion):
            roots.setdefault(c.thread or c.id, c)
    return roots


def git_auth_env(clone_url: str, user: str, token: str) -> dict[str, str]:
    """Credentials for git over HTTPS as an extra header set through the environment: the token
    never appears in a URL, a command line, .git/config or a log line."""
    if not clone_url.startswith(("http://", "https://")):
        return {}
    parts = urlsplit(clone_url)
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{parts.netloc}/.extraheader",
        "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
    }


def roll_up(states: list[tuple[str, str]]) -> CIStatus:
    """Combine (name, state) pairs, each success, failure or pending, into one CI state."""
    failed = [n for n, s in states if s == "failure"]
    pending = [n for n, s in states if s == "pending"]
    if failed:
        return CIStatus(state="failure", detail=f"failed: {', '.join(failed[:5])}")
    if pending:
        return CIStatus(state="pending", detail=f"waiting for: {', '.join(pending[:5])}")
    if not states:
        return CIStatus(state="pending", detail="no checks reported yet")
    return CIStatus(state="success", detail=f"{len(states)} check(s) passed")


def clip(text: str, limit: int) -> str:
    """The last `limit` characters of `text` (a log's end is where the failure is)."""
    text = text.strip()
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def fetch_tail(url: str, *, timeout_s: float, headers: dict[str, str] | None = None) -> str:
    """The tail of a job log at `url`. A CI log is the repository's output and may be huge or
    hostile; only its end reaches the agent. A `Range` request asks for the end alone (log
    stores such as GitHub's answer 206); a server that ignores it is read for at most
    LOG_READ_BYTES, and a log longer than that says where it was cut."""
    want = LOG_TAIL_CHARS * 4
    with requests.get(
        url, headers={**(headers or {}), "Range": f"bytes=-{want}"}, timeout=timeout_s, stream=True
    ) as resp:
        resp.raise_for_status()
        kept = b""
        read = 0
        cut = False
        for chunk in resp.iter_content(64 * 1024):
            read += len(chunk)
            kept = (kept + chunk)[-want:]
            if read >= LOG_READ_BYTES:
                cut = True
                break
    text = clip(kept.decode("utf-8", "replace"), LOG_TAIL_CHARS)
    return text + f"\n[log cut after {LOG_READ_BYTES // (1024 * 1024)} MiB]" if cut else text
