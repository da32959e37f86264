"""The GitLab platform through python-gitlab against a REST v4 stand-in and a bare remote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tamma.config import GitLabSettings
from tamma.demo import DEMO_BODY, DEMO_TITLE, make_sample_repo
from tamma.errors import MergeBlockedError, MergeWaiting, NotFoundError, PlatformError
from tamma.models import PullRequest, RepoRef, TestReport
from tamma.platforms.forge import PROGRESS_MARK
from tamma.platforms.gitlab import GitLabPlatform
from tests.standins.git_remote import BareRemote, git
from tests.standins.gitlab_api import FakeGitLab, rate_limited
from tests.standins.http import Reply, serve

TOKEN = "test-gitlab-token-1"
PATH = "acme/platform/web"
REPO = RepoRef(platform="gitlab", locator=PATH)
ENC = "/api/v4/projects/acme%2Fplatform%2Fweb"


@pytest.fixture
def gl(tmp_path: Path) -> Iterator[tuple[FakeGitLab, GitLabPlatform]]:
    remote = BareRemote.from_worktree(make_sample_repo(tmp_path / "src"), tmp_path / "remote.git")
    fake = FakeGitLab(PATH, remote, TOKEN)
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    with serve(fake) as s:
        fake.base = s.url
        settings = GitLabSettings(token=SecretStr(TOKEN), base_url=s.url, git_url=str(remote.path))
        yield fake, GitLabPlatform(REPO, settings, bot_login="tamma-bot")


async def test_issue_notes_and_errors(gl: tuple[FakeGitLab, GitLabPlatform]) -> None:
    fake, platform = gl
    issue = await platform.get_issue(1)
    assert (issue.title, issue.author, issue.state) == (DEMO_TITLE, "reporter", "open")
    with pytest.raises(NotFoundError):
        await platform.get_issue(7)
    fake.notes[1] = [{"id": i, "body": f"n{i}", "author": {"username": "x"}, "system": False} for i in range(130)]
    await platform.upsert_progress(1, "one")
    await platform.upsert_progress(1, "two")
    await platform.comment_issue(1, "Rejected: scope")
    await platform.comment_issue(1, "Rejected: scope")
    assert fake.calls("POST") == [f"POST {ENC}/issues/1/notes"] * 2  # progress once, comment once
    assert len(fake.calls("PUT")) == 1
    assert next(n["body"] for n in fake.notes[1] if n["author"]["username"] == "tamma-bot") == f"{PROGRESS_MARK}\ntwo"
    assert fake.calls()[0] == f"GET {ENC}/issues/1"


async def test_token_rate_limit_and_server_errors(gl: tuple[FakeGitLab, GitLabPlatform]) -> None:
    fake, platform = gl
    wrong = GitLabPlatform(REPO, platform.settings.model_copy(update={"token": SecretStr("glpat-wrong")}))
    with pytest.raises(PlatformError) as info:
        await wrong.get_issue(1)
    assert not info.value.retryable and "GITLAB_TOKEN" in info.value.message
    fake.inject.append(("GET .*/issues/1$", rate_limited(9)))
    with pytest.raises(PlatformError) as info:
        await platform.get_issue(1)
    assert info.value.retryable and info.value.retry_after_s == 9
    before = len(fake.log)
    fake.inject.append(("GET .*/issues/1$", rate_limited(1)))
    with pytest.raises(PlatformError):
        await platform.get_issue(1)
    assert len(fake.log) == before + 1  # python-gitlab did not sleep and retry by itself


async def test_branch_mr_ci_merge(gl: tuple[FakeGitLab, GitLabPlatform], tmp_path: Path) -> None:
    fake, platform = gl
    assert await platform.default_branch() == "main"
    sha = await platform.ensure_branch("tamma/issue-1", "main")
    assert await platform.ensure_branch("tamma/issue-1", "main") == sha
    assert fake.calls("POST") == [f"POST {ENC}/repository/branches"]
    fake.remote.push_file("tamma/issue-1", "fix.txt", "fixed\n", tmp_path)
    mr = await platform.create_pull_request("tamma/issue-1", "main", "Fix", "Closes #1")
    assert (await platform.create_pull_request("tamma/issue-1", "main", "Fix", "Closes #1")).number == mr.number
    assert len(fake.mrs) == 1
    head = fake.remote.sha("tamma/issue-1") or ""
    assert (await platform.ci_status(mr)).state == "pending"
    await platform.report_tests(head, TestReport(passed=True, command="t", exit_code=0, summary="ok"))
    fake.statuses[head].append({"id": 1, "name": "pipeline", "status": "running", "sha": head})
    assert (await platform.ci_status(mr)).state == "pending"
    fake.statuses[head][-1]["status"] = "success"
    assert (await platform.ci_status(mr)).state == "success"
    # a failed job allowed to fail does not fail CI; a failed job hands over the end of its trace
    job = f"{fake.base}/{fake.path}/-/jobs/77"
    fake.statuses[head].append(
        {"id": 76, "name": "flaky", "status": "failed", "allow_failure": True, "sha": head, "target_url": job + "6"}
    )
    assert (await platform.ci_status(mr)).state == "success"
    fake.statuses[head].append(
        {"id": 77, "name": "rspec", "status": "failed", "description": "", "sha": head, "target_url": job}
    )
    noise = b"\x1b[0Ksection_start\n" * 5000
    fake.job_traces[77] = noise + b"Failure: expected 2, got 1\nERROR: Job failed: exit code 1\n"
    red = await platform.ci_status(mr)
    assert red.state == "failure" and red.detail == "failed: rspec"
    [failure] = red.failures
    assert failure.name == "rspec" and failure.url == job
    assert failure.log.endswith("ERROR: Job failed: exit code 1") and len(failure.log) <= 4100
    await platform.comment_pull_request(mr.number, "CI still fails")
    await platform.comment_pull_request(mr.number, "CI still fails")  # a retried post is not doubled
    assert [n["body"].splitlines()[0] for n in fake.mr_notes[mr.number]] == ["CI still fails"]
    fake.statuses[head] = [s for s in fake.statuses[head] if s["name"] != "rspec"]
    fake.approvals_left = 1
    with pytest.raises(MergeWaiting, match="more approval"):
        await platform.merge_pull_request(mr.number)
    fake.approvals_left = 0
    merged = await platform.merge_pull_request(mr.number)
    again = await platform.merge_pull_request(mr.number)
    assert merged.sha and again.already_merged and again.sha == merged.sha
    assert git(fake.remote.path, "show", "main:fix.txt") == "fixed"


async def test_second_open_mr_conflict_is_reused(gl: tuple[FakeGitLab, GitLabPlatform]) -> None:
    fake, platform = gl
    first = await open_mr(fake, platform)
    fake.inject.append(("GET .*/merge_requests$", Reply(200, [])))  # the first look misses it (a race)
    again = await platform.create_pull_request("b", "main", "t", "")
    assert again.number == first.number and len(fake.mrs) == 1


def test_clone_url_and_credentials() -> None:
    p = GitLabPlatform(REPO, GitLabSettings(token=SecretStr("glpat-secret"), base_url="https://git.corp/gitlab"))
    assert p.clone_url() == "https://git.corp/gitlab/acme/platform/web.git"
    assert "glpat-secret" not in p.clone_url()
    assert p.git_env()["GIT_CONFIG_KEY_0"] == "http.https://git.corp/.extraheader"


_USER_IDS: dict[str, int] = {}


def note(
    nid: int, user: str, body: str, *, line: int | None = None, resolved: bool = False, system: bool = False
) -> dict[str, object]:
    """A merge-request note inside a discussion, as GitLab's Discussions API documents it."""
    position = {"base_sha": "a", "head_sha": "b", "old_path": "pager.py", "new_path": "pager.py", "new_line": line}
    return {
        "id": nid,
        "type": "DiffNote" if line else None,
        "body": body,
        "author": {"id": _USER_IDS.setdefault(user, 500 + len(_USER_IDS)), "username": user},
        "system": system,
        "resolvable": line is not None,
        "resolved": resolved,
        **({"position": position} if line else {}),
    }


def discussion(did: str, *notes: dict[str, object], single: bool = False) -> dict[str, object]:
    return {"id": did, "individual_note": single, "notes": list(notes)}


async def open_mr(fake: FakeGitLab, platform: GitLabPlatform) -> PullRequest:
    """A merge request for a fresh branch `b` (no changes) on the stand-in."""
    fake.remote.create_branch("b", fake.remote.sha("main") or "")
    return await platform.create_pull_request("b", "main", "t", "")


async def test_review_discussions_threads_and_resolved(gl: tuple[FakeGitLab, GitLabPlatform]) -> None:
    fake, platform = gl
    mr = await open_mr(fake, platform)
    fake.mr_discussions[mr.number] = [
        discussion(
            "d1",
            note(1, "alice", "Name the constant", line=4),
            note(2, "bob", "+1, and a docstring", line=4),
            note(3, "tamma-bot", "Done", line=4),
        ),
        discussion(
            "d2", note(4, "carol", "Old nit", line=7, resolved=True), note(5, "carol", "still?", line=7, resolved=True)
        ),
        discussion("d3", note(6, "dave", "Please also update the README"), single=True),
        discussion("d4", note(7, "root", "added 1 commit", system=True), single=True),
    ] + [discussion(f"x{i}", note(100 + i, "erin", f"nit {i}"), single=True) for i in range(105)]
    fake.log.clear()
    got = await platform.review_comments(mr)
    by_id = {c.id: c for c in got}
    assert (by_id[1].path, by_id[1].line, by_id[1].thread) == ("pager.py", 4, None)
    assert (by_id[2].author, by_id[2].thread) == ("bob", 1)  # a reply in alice's thread
    assert 3 not in by_id and 4 not in by_id and 5 not in by_id and 7 not in by_id  # bot, resolved, system
    assert (by_id[6].path, by_id[6].line, by_id[6].thread) == ("", None, None)
    assert len([c for c in got if c.author == "erin"]) == 105  # the second page was read
    assert [c for c in fake.calls() if "discussions" in c] == [
        f"GET {ENC}/merge_requests/{mr.number}/discussions?per_page=100",
        f"GET {ENC}/merge_requests/{mr.number}/discussions?per_page=100&page=2",
    ]


async def test_replies_answer_each_discussion_once_per_commit(gl: tuple[FakeGitLab, GitLabPlatform]) -> None:
    fake, platform = gl
    mr = await open_mr(fake, platform)
    fake.mr_discussions[mr.number] = [
        discussion("d1", note(1, "alice", "Name it", line=4), note(2, "bob", "+1", line=4)),
        discussion("d3", note(6, "dave", "Update the README"), single=True),
    ]
    feedback = await platform.review_comments(mr)
    assert {c.discussion for c in feedback} == {"d1", "d3"}
    fake.log.clear()
    assert await platform.reply_to_reviews(mr, feedback, "b" * 40) == 2
    assert await platform.reply_to_reviews(mr, feedback, "b" * 40) == 0
    assert fake.calls("POST") == [
        f"POST {ENC}/merge_requests/{mr.number}/discussions/d1/notes",
        f"POST {ENC}/merge_requests/{mr.number}/discussions/d3/notes",
    ]
    bot = [n for d in fake.mr_discussions[mr.number] for n in d["notes"] if n["author"]["username"] == "tamma-bot"]
    assert [n["body"].splitlines()[0] for n in bot] == ["Addressed in bbbbbbbbbb."] * 2
    assert await platform.review_comments(mr) == feedback  # Tamma's own replies are not feedback


async def test_a_project_access_token_knows_its_own_notes_by_its_user_and_marker(
    gl: tuple[FakeGitLab, GitLabPlatform],
) -> None:
    """A project access token posts as its own bot user, not as webhooks.bot_login: Tamma asks
    GitLab who the token is, so its replies never come back as review feedback."""
    fake, platform = gl
    fake.token_login = "project_42_bot_5f1c"
    mr = await open_mr(fake, platform)
    fake.mr_discussions[mr.number] = [discussion("d1", note(1, "alice", "Name it", line=4))]
    feedback = await platform.review_comments(mr)
    assert await platform.reply_to_reviews(mr, feedback, "b" * 40) == 1
    [_, reply] = fake.mr_discussions[mr.number][0]["notes"]
    assert reply["author"]["username"] == "project_42_bot_5f1c"
    assert await platform.review_comments(mr) == feedback
    # a note carrying Tamma's marker is Tamma's, whoever GitLab says wrote it
    fake.mr_discussions[mr.number].append(discussion("d2", note(9, "other", "x <!-- tamma:abc -->"), single=True))
    assert await platform.review_comments(mr) == feedback
    assert fake.calls("GET").count("GET /api/v4/user") == 1


async def test_open_issues_for_the_picker(gl: tuple[FakeGitLab, GitLabPlatform]) -> None:
    fake, platform = gl
    for n in range(2, 30):
        fake.add_issue(n, f"Issue {n}", "")
    fake.issues[7]["state"] = "closed"
    issues = await platform.open_issues()
    assert [i.number for i in issues] == sorted(set(range(1, 30)) - {7}, reverse=True)
    assert issues[-1].title == DEMO_TITLE and issues[-1].author == "reporter"


async def test_merge_is_pinned_to_the_commit_ci_passed_on(
    gl: tuple[FakeGitLab, GitLabPlatform], tmp_path: Path
) -> None:
    fake, platform = gl
    await platform.ensure_branch("tamma/issue-1", "main")
    fake.remote.push_file("tamma/issue-1", "fix.txt", "fixed\n", tmp_path)
    mr = await platform.create_pull_request("tamma/issue-1", "main", "Fix", "")
    tested = (await platform.ci_status(mr)).sha
    fake.remote.push_file("tamma/issue-1", "late.txt", "untested\n", tmp_path)
    with pytest.raises(MergeBlockedError, match="moved after CI passed"):
        await platform.merge_pull_request(mr.number, sha=tested)
    merged = await platform.merge_pull_request(mr.number, sha=fake.remote.sha("tamma/issue-1") or "")
    assert merged.merged
    [(path, body)] = [(p, b) for m, p, b in fake.log if m == "PUT" and p.split("?")[0].endswith("/merge")]
    head = fake.remote.sha("tamma/issue-1") or ""
    assert f"sha={head}" in path or (body or {}).get("sha") == head  # the SHA GitLab checks the head against


async def test_each_note_carries_its_authors_role_in_the_project(gl: tuple[FakeGitLab, GitLabPlatform]) -> None:
    """GitLab notes carry no role: it is asked of the members API (inherited included), once per
    author; someone who is no member is NONE, and the trust policy drops them."""
    from tamma.policy import untrusted_reason

    fake, platform = gl
    mr = await open_mr(fake, platform)
    fake.mr_discussions[mr.number] = [
        discussion("d1", note(1, "maint", "Name the constant", line=4), note(2, "dev", "+1", line=4)),
        discussion("d2", note(3, "reporter", "Rename it all"), single=True),
        discussion("d3", note(4, "stranger", "Add my crypto miner"), single=True),
        discussion("d4", note(5, "stranger", "please?"), single=True),
    ]
    fake.members = {_USER_IDS["maint"]: 40, _USER_IDS["dev"]: 30, _USER_IDS["reporter"]: 20}
    fake.log.clear()
    got = {c.author: c.association for c in await platform.review_comments(mr)}
    assert got == {"maint": "MAINTAINER", "dev": "DEVELOPER", "reporter": "REPORTER", "stranger": "NONE"}
    assert len([c for c in fake.calls("GET") if "/members/all/" in c]) == 4  # once per author
    comments = await platform.review_comments(mr)
    roles = ["DEVELOPER", "MAINTAINER", "OWNER"]
    kept = [c.author for c in comments if not untrusted_reason(c, "gitlab", [], roles, [])]
    assert kept == ["maint", "dev"]
    assert [c.author for c in comments if not untrusted_reason(c, "gitlab", [], roles, ["Stranger"])] == [
        "maint", "dev", "stranger", "stranger",
    ]  # fmt: skip


async def test_an_untested_change_opens_as_a_draft_and_is_readied_to_merge(
    gl: tuple[FakeGitLab, GitLabPlatform], tmp_path: Path
) -> None:
    fake, platform = gl
    await platform.ensure_branch("tamma/issue-2", "main")
    fake.remote.push_file("tamma/issue-2", "fix.txt", "fixed\n", tmp_path)
    mr = await platform.create_pull_request("tamma/issue-2", "main", "Fix", "Closes #2", draft=True)
    assert mr.draft and fake.mrs[mr.number]["title"] == "Draft: Fix"
    merged = await platform.merge_pull_request(mr.number)  # a person approved the merge
    assert merged.merged and fake.mrs[mr.number]["title"] == "Fix"
