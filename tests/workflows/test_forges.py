"""The issue workflow, unchanged, on the GitHub and GitLab stand-ins: issue → PR → CI green →
merged, with no duplicate branch, PR or comment when a step is retried after a crash, and a
rate-limited response that delays and succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import Client

from tamma.config import GitHubSettings, GitLabSettings, Settings
from tamma.demo import DEMO_BODY, DEMO_TITLE, make_sample_repo
from tamma.models import IssueTaskInput, RepoRef, TaskState, TaskStatus
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tests.conftest import running_worker
from tests.standins.git_remote import BareRemote, git
from tests.standins.github_api import FakeGitHub, rate_limited
from tests.standins.gitlab_api import FakeGitLab
from tests.standins.gitlab_api import rate_limited as gl_rate_limited
from tests.standins.http import serve

TOKEN = "ghp_e2e_token_abcdef"


@pytest.fixture
def github(tmp_path: Path, settings: Settings) -> Iterator[tuple[FakeGitHub, Settings]]:
    remote = BareRemote.from_worktree(make_sample_repo(tmp_path / "src"), tmp_path / "remote.git")
    fake = FakeGitHub("octo", "hello", remote, TOKEN)
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    with serve(fake) as s:
        fake.base = s.url
        gh = GitHubSettings(token=SecretStr(TOKEN), base_url=s.url, git_url=str(remote.path))
        yield fake, settings.model_copy(update={"github": gh})


async def run(client: Client, task_queue: str, settings: Settings, repo: RepoRef) -> TaskState:
    service = TaskService(client, task_queue)
    opts = settings.task_options(transcript=str(DEMO_TRANSCRIPT), retry_initial_s=0.2)
    async with running_worker(client, task_queue, build_activities(settings), settings):
        wid, _ = await service.start(IssueTaskInput(repo=repo, issue_number=1, options=opts))
        return await service.handle(wid).result()


async def test_github_issue_to_merged_pr(client: Client, task_queue: str, github: tuple[FakeGitHub, Settings]) -> None:
    fake, settings = github
    fake.inject.append(("GET .*/issues/1$", rate_limited(reset_in_s=1)))  # the first fetch is rate limited
    fake.crash_after.append("POST .*/pulls$")  # the PR is made, then the answer is lost
    fake.crash_after.append("POST .*/git/refs$")  # the branch is made, then the answer is lost
    state = await run(client, task_queue, settings, RepoRef(platform="github", locator="octo/hello"))
    assert state.status == TaskStatus.MERGED, state.error
    assert "(page - 1)" in git(fake.remote.path, "show", "main:pager.py")
    # Retried steps made nothing twice.
    assert fake.remote.branches() == ["main", "tamma/issue-1"]
    assert len(fake.pulls) == 1 and fake.pulls[2]["merged"]
    # The retries looked first and found what the lost answers had made: one POST each.
    posts = fake.calls("POST")
    assert posts.count("POST /repos/octo/hello/git/refs") == 1 and posts.count("POST /repos/octo/hello/pulls") == 1
    assert fake.calls().count("GET /repos/octo/hello/git/ref/heads/tamma/issue-1") == 2
    comments = [c for c in fake.comments.get(1, []) if c["user"] == "tamma-bot"]
    assert len(comments) == 1 and "merge" in comments[0]["body"]  # one progress comment, edited
    assert fake.pulls[2]["body"].startswith("Fixes #1")
    issue_fetches = fake.calls().count("GET /repos/octo/hello/issues/1")
    assert issue_fetches >= 2  # the rate-limited fetch was made again and succeeded
    head = fake.pulls[2].get("head_sha")
    assert any(s["context"] == "tamma/tests" and s["state"] == "success" for s in fake.statuses.get(head or "", []))


@pytest.fixture
def gitlab(tmp_path: Path, settings: Settings) -> Iterator[tuple[FakeGitLab, Settings]]:
    remote = BareRemote.from_worktree(make_sample_repo(tmp_path / "src"), tmp_path / "remote.git")
    fake = FakeGitLab("acme/platform/web", remote, "glpat-e2e")
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    with serve(fake) as s:
        fake.base = s.url
        gl = GitLabSettings(token=SecretStr("glpat-e2e"), base_url=s.url, git_url=str(remote.path))
        yield fake, settings.model_copy(update={"gitlab": gl})


async def test_gitlab_issue_to_merged_mr(client: Client, task_queue: str, gitlab: tuple[FakeGitLab, Settings]) -> None:
    fake, settings = gitlab
    fake.inject.append(("GET .*/issues/1$", gl_rate_limited(1)))
    fake.crash_after.append("POST .*/merge_requests$")
    fake.crash_after.append("PUT .*/merge$")  # merged, then the answer is lost
    state = await run(client, task_queue, settings, RepoRef(platform="gitlab", locator="acme/platform/web"))
    assert state.status == TaskStatus.MERGED, state.error
    assert "(page - 1)" in git(fake.remote.path, "show", "main:pager.py")
    assert len(fake.mrs) == 1 and fake.mrs[1]["state"] == "merged"
    assert fake.calls("POST").count("POST /api/v4/projects/acme%2Fplatform%2Fweb/merge_requests") == 1
    merges = [c for c in fake.calls("PUT") if "/merge_requests/1/merge" in c]
    assert merges == ["PUT /api/v4/projects/acme%2Fplatform%2Fweb/merge_requests/1/merge?squash=True"]
    bot_notes = [n for n in fake.notes.get(1, []) if n["author"]["username"] == "tamma-bot"]
    assert len(bot_notes) == 1 and "merge" in bot_notes[0]["body"]
    assert state.merge_sha == fake.mrs[1]["squash_commit_sha"]
