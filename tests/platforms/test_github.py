"""The GitHub platform through PyGithub against a REST stand-in on 127.0.0.1 and a bare git
remote on disk. Asserts the exact requests made, not only the outcome."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tamma.config import GitHubSettings
from tamma.demo import DEMO_BODY, DEMO_TITLE, make_sample_repo
from tamma.errors import MergeBlockedError, NotFoundError, PlatformError
from tamma.models import PullRequest, RepoRef, ReviewComment, TestReport
from tamma.platforms.forge import PROGRESS_MARK
from tamma.platforms.github import GitHubPlatform
from tests.standins.git_remote import BareRemote, git
from tests.standins.github_api import FakeGitHub, rate_limited, secondary_limit
from tests.standins.http import Reply, serve

TOKEN = "ghp_standin_0123456789"
REPO = RepoRef(platform="github", locator="octo/hello")


@pytest.fixture
def gh(tmp_path: Path) -> Iterator[tuple[FakeGitHub, GitHubPlatform]]:
    remote = BareRemote.from_worktree(make_sample_repo(tmp_path / "src"), tmp_path / "remote.git")
    fake = FakeGitHub("octo", "hello", remote, TOKEN)
    fake.add_issue(1, DEMO_TITLE, DEMO_BODY)
    with serve(fake) as s:
        fake.base = s.url
        settings = GitHubSettings(token=SecretStr(TOKEN), base_url=s.url, git_url=str(remote.path))
        yield fake, GitHubPlatform(REPO, settings, bot_login="tamma-bot")


async def test_issue_and_errors(gh: tuple[FakeGitHub, GitHubPlatform]) -> None:
    fake, platform = gh
    issue = await platform.get_issue(1)
    assert (issue.title, issue.author, issue.url) == (DEMO_TITLE, "reporter", "https://github.test/octo/hello/issues/1")
    with pytest.raises(NotFoundError, match="no issue #9"):
        await platform.get_issue(9)
    fake.issues[2] = {**fake.issues[1], "number": 2, "pull_request": {"url": "x"}}
    with pytest.raises(NotFoundError, match="is a pull request"):
        await platform.get_issue(2)
    assert fake.calls() == [
        "GET /repos/octo/hello/issues/1",
        "GET /repos/octo/hello/issues/9",
        "GET /repos/octo/hello/issues/2",
    ]


async def test_bad_token_and_missing_scope(gh: tuple[FakeGitHub, GitHubPlatform]) -> None:
    fake, platform = gh
    wrong = GitHubPlatform(REPO, platform.settings.model_copy(update={"token": SecretStr("ghp_wrong")}))
    with pytest.raises(PlatformError) as info:
        await wrong.get_issue(1)
    assert not info.value.retryable and "GITHUB_TOKEN" in info.value.message
    fake.inject.append(("GET .*/issues/1$", Reply(403, {"message": "Resource not accessible by integration"})))
    with pytest.raises(PlatformError) as info:
        await platform.get_issue(1)
    assert not info.value.retryable and "pull requests" in info.value.message


async def test_rate_limits_are_retryable_with_the_servers_delay(gh: tuple[FakeGitHub, GitHubPlatform]) -> None:
    fake, platform = gh
    fake.inject.append(("GET .*/issues/1$", rate_limited(reset_in_s=30)))
    with pytest.raises(PlatformError) as info:
        await platform.get_issue(1)
    assert info.value.retryable and 25 <= (info.value.retry_after_s or 0) <= 31
    fake.inject.append(("GET .*/issues/1$", secondary_limit(7)))
    with pytest.raises(PlatformError) as info:
        await platform.get_issue(1)
    assert info.value.retryable and info.value.retry_after_s == 7
    fake.inject.append(("GET .*/issues/1$", Reply(502, {"message": "Server Error"})))
    with pytest.raises(PlatformError) as info:
        await platform.get_issue(1)
    assert info.value.retryable
    assert len(fake.calls()) == 3  # PyGithub's own retries are off


async def test_comments_are_not_doubled_and_progress_is_edited(gh: tuple[FakeGitHub, GitHubPlatform]) -> None:
    fake, platform = gh
    fake.comments[1] = [{"id": i, "body": f"chatter {i}", "user": "someone"} for i in range(150)]
    await platform.upsert_progress(1, "step 1")
    await platform.comment_issue(1, "Plan rejected by ann: too big")
    await platform.comment_issue(1, "Plan rejected by ann: too big")  # a retried activity
    await platform.upsert_progress(1, "step 2")
    await platform.upsert_progress(1, "step 2")
    posts = [c for c in fake.calls("POST")]
    assert len(posts) == 2  # one progress comment, one rejection comment
    assert len(fake.calls("PATCH")) == 1  # step 2 edited it; the identical repeat sent nothing
    mine = [c for c in fake.comments[1] if c["user"] == "tamma-bot"]
    assert mine[0]["body"] == f"{PROGRESS_MARK}\nstep 2"
    # 150 + 2 comments over pages of 100: Tamma followed the link header to page 2.
    assert any("page=2" in c for c in fake.calls("GET"))


async def test_branch_and_pull_request_are_idempotent(gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path) -> None:
    fake, platform = gh
    sha = await platform.ensure_branch("tamma/issue-1", "main")
    assert await platform.ensure_branch("tamma/issue-1", "main") == sha
    assert fake.calls() == [
        "GET /repos/octo/hello/git/ref/heads/tamma/issue-1",
        "GET /repos/octo/hello/branches/main",
        "POST /repos/octo/hello/git/refs",
        "GET /repos/octo/hello/git/ref/heads/tamma/issue-1",
    ]
    fake.remote.push_file("tamma/issue-1", "fix.txt", "fixed\n", tmp_path)
    fake.log.clear()
    pr = await platform.create_pull_request("tamma/issue-1", "main", "Fix", "Fixes #1")
    again = await platform.create_pull_request("tamma/issue-1", "main", "Fix", "Fixes #1")
    assert pr.number == again.number and len(fake.pulls) == 1
    assert fake.calls("POST") == ["POST /repos/octo/hello/pulls"]
    assert fake.log[1][2]["head"] == "tamma/issue-1" and fake.log[1][2]["draft"] is False


async def test_pull_request_race_reuses_the_existing_one(gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path) -> None:
    fake, platform = gh
    fake.remote.create_branch("b", fake.remote.sha("main") or "")
    fake.pulls[5] = {
        "number": 5,
        "state": "open",
        "title": "t",
        "body": "",
        "head": "b",
        "base": "main",
        "merged": False,
    }
    fake.inject.append(("GET .*/pulls$", Reply(200, [])))  # the first look misses it (a race)
    pr = await platform.create_pull_request("b", "main", "t", "")
    assert pr.number == 5 and len(fake.pulls) == 1
    assert fake.calls() == [
        "GET /repos/octo/hello/pulls?head=octo%3Ab&per_page=100&state=open",
        "POST /repos/octo/hello/pulls",
        "GET /repos/octo/hello/pulls?head=octo%3Ab&per_page=100&state=open",
    ]


async def test_ci_rolls_up_check_runs_and_statuses(gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path) -> None:
    fake, platform = gh
    pr = await open_pr(fake, platform)
    head = fake.remote.sha("b") or ""
    assert (await platform.ci_status(pr)).state == "pending"  # nothing reported yet
    await platform.report_tests(head, TestReport(passed=True, command="t", exit_code=0, summary="2 passed"))
    fake.check_runs[head] = [{"id": 1, "name": "build", "status": "in_progress", "conclusion": None}]
    assert (await platform.ci_status(pr)).state == "pending"
    fake.check_runs[head] = [{"id": 1, "name": "build", "status": "completed", "conclusion": "failure"}]
    status = await platform.ci_status(pr)
    assert status.state == "failure" and "build" in status.detail
    fake.check_runs[head][0]["conclusion"] = "success"
    assert (await platform.ci_status(pr)).state == "success"
    assert fake.statuses[head][0]["context"] == "tamma/tests"


async def test_ci_reads_every_status_page_and_the_combined_state(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path
) -> None:
    """F4: 130 contexts, the one failing on the second page of the combined status; the old code
    read the first page only and called this green."""
    fake, platform = gh
    pr = await open_pr(fake, platform)
    head = fake.remote.sha("b") or ""
    fake.statuses[head] = [{"context": f"ci/{i:03}", "state": "success", "description": "ok"} for i in range(130)]
    assert (await platform.ci_status(pr)).state == "success"
    fake.statuses[head][117] = {
        "context": "ci/117",
        "state": "error",
        "description": "runner lost",
        "target_url": "https://ci.test/117",
    }
    status = await platform.ci_status(pr)
    assert status.state == "failure" and "ci/117" in status.detail
    [failure] = status.failures
    assert (failure.name, failure.summary, failure.url) == ("ci/117", "runner lost", "https://ci.test/117")
    assert any(c.startswith(f"GET /repos/octo/hello/commits/{head}/statuses?") for c in fake.calls("GET"))


async def test_a_failed_actions_check_carries_its_output_and_the_end_of_its_log(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path
) -> None:
    fake, platform = gh
    pr = await open_pr(fake, platform)
    head = fake.remote.sha("b") or ""
    fake.check_runs[head] = [failed_actions_check(4242, "lint")]
    # 3 MB of noise, then the line that matters: only the end travels (a Range request)
    fake.job_logs[4242] = b"noise line\n" * 300_000 + b"pager.py:3:80: E501 line too long (99 > 79)\n"
    status = await platform.ci_status(pr)
    [failure] = status.failures
    assert failure.name == "lint" and "1 error" in failure.summary and "flake8 found" in failure.summary
    assert failure.log.endswith("E501 line too long (99 > 79)") and len(failure.log) <= 4100
    [blob] = fake.log_requests
    assert blob.headers.get("range", "").startswith("bytes=-")
    assert "authorization" not in blob.headers  # the token never goes to the log store
    # a log store that ignores Range: read up to the cap, then say it was cut
    fake.check_runs[head] = [failed_actions_check(4243, "test")]
    fake.job_logs[4243] = b"x" * (9 * 1024 * 1024)
    original = fake._log_blob
    fake._log_blob = lambda req, job: original(  # type: ignore[method-assign]
        type(req)(req.method, req.path, {k: v for k, v in req.headers.items() if k != "range"}, req.raw), job
    )
    [cut] = (await platform.ci_status(pr)).failures
    assert cut.log.endswith("[log cut after 8 MiB]")
    # without a log (no Actions permission), the check's own output still goes through
    fake.check_runs[head] = [failed_actions_check(4244, "build")]
    [bare] = (await platform.ci_status(pr)).failures
    assert bare.log == "" and "1 error" in bare.summary


def failed_actions_check(job: int, name: str) -> dict[str, object]:
    return {
        "id": job,
        "name": name,
        "status": "completed",
        "conclusion": "failure",
        "html_url": f"https://github.test/octo/hello/runs/{job}",
        "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
        "output": {"title": "1 error", "summary": "flake8 found 1 problem", "text": None},
    }


async def test_merge_squash_idempotent_and_conflict(gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path) -> None:
    fake, platform = gh
    await platform.ensure_branch("tamma/issue-1", "main")
    fake.remote.push_file("tamma/issue-1", "fix.txt", "fixed\n", tmp_path)
    pr = await platform.create_pull_request("tamma/issue-1", "main", "Fix", "")
    first = await platform.merge_pull_request(pr.number)
    second = await platform.merge_pull_request(pr.number)
    assert first.merged and second.already_merged and first.sha == second.sha
    assert git(fake.remote.path, "show", "main:fix.txt") == "fixed"
    assert git(fake.remote.path, "log", "-1", "--format=%P", "main").count(" ") == 0  # squashed: one parent
    assert len(fake.calls("PUT")) == 1
    fake.remote.create_branch("c", fake.remote.sha("main") or "")
    fake.remote.push_file("c", "README.md", "theirs\n", tmp_path)
    fake.remote.push_file("main", "README.md", "ours\n", tmp_path)
    conflicted = await platform.create_pull_request("c", "main", "C", "")
    with pytest.raises(MergeBlockedError) as info:
        await platform.merge_pull_request(conflicted.number)
    assert not info.value.retryable


def test_git_credentials_stay_out_of_urls() -> None:
    p = GitHubPlatform(REPO, GitHubSettings(token=SecretStr("ghp_secret_xyz")))
    assert p.clone_url() == "https://github.com/octo/hello.git"
    env = p.git_env()
    assert "ghp_secret_xyz" not in p.clone_url()
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraheader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("AUTHORIZATION: basic ")
    enterprise = GitHubPlatform(REPO, GitHubSettings(token=SecretStr("t"), base_url="https://ghe.corp/api/v3"))
    assert enterprise.clone_url() == "https://ghe.corp/octo/hello.git"


async def open_pr(fake: FakeGitHub, platform: GitHubPlatform) -> PullRequest:
    """A pull request for a fresh branch `b` (no changes) on the stand-in."""
    fake.remote.create_branch("b", fake.remote.sha("main") or "")
    return await platform.create_pull_request("b", "main", "t", "")


def as_app(settings: GitHubSettings, key: Path) -> GitHubSettings:
    """The same GitHub settings, authenticating as App 42, installation 7, with the key at `key`."""
    return settings.model_copy(
        update={"token": None, "app_id": 42, "app_private_key": SecretStr(str(key)), "installation_id": 7}
    )


def app_keys() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.mark.parametrize(("ttl_s", "token_fetches"), [(3600, 1), (10, 2)])
async def test_github_app_installation_token_is_fetched_and_refreshed_before_expiry(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path, ttl_s: int, token_fetches: int
) -> None:
    """App id + private key → a signed JWT → an installation token, used for the API and for git;
    a token within 20 s of expiring is replaced before it is used (PyGithub's threshold)."""
    fake, platform = gh
    private, public = app_keys()
    fake.app, fake.app_token_ttl_s = (42, public, 7), ttl_s
    (tmp_path / "app.pem").write_bytes(private)
    app_settings = as_app(platform.settings, tmp_path / "app.pem")
    app_platform = GitHubPlatform(REPO, app_settings)
    fake.log.clear()
    assert (await app_platform.get_issue(1)).title == DEMO_TITLE
    assert (await app_platform.get_issue(1)).title == DEMO_TITLE
    calls = fake.calls()
    assert calls.count("POST /app/installations/7/access_tokens") == token_fetches
    assert calls.count("GET /repos/octo/hello/issues/1") == 2
    # git gets the installation token (as the x-access-token user), never the App's key
    over_https = GitHubPlatform(REPO, app_settings.model_copy(update={"git_url": "https://github.test/{repo}.git"}))
    over_https.gh = app_platform.gh  # the same App session, so the same installation token
    env = over_https.git_env()  # (a token about to expire is replaced here too)
    newest = max(fake.installation_tokens, key=fake.installation_tokens.__getitem__)
    basic = base64.b64encode(f"x-access-token:{newest}".encode()).decode()
    assert env["GIT_CONFIG_VALUE_0"] == f"AUTHORIZATION: basic {basic}"
    assert fake.installation_tokens[newest] > time.time()  # a live token, not an expired one


async def test_github_app_with_the_wrong_key_is_refused_clearly(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path
) -> None:
    fake, platform = gh
    fake.app = (42, app_keys()[1], 7)
    (tmp_path / "other.pem").write_bytes(app_keys()[0])  # not the key GitHub knows for this App
    wrong = as_app(platform.settings, tmp_path / "other.pem")
    with pytest.raises(PlatformError) as info:
        await GitHubPlatform(REPO, wrong).get_issue(1)
    assert not info.value.retryable and "401" in info.value.message


def line_comment(
    cid: int, user: str, body: str, line: int | None, reply_to: int | None = None, association: str = "MEMBER"
) -> dict[str, object]:
    """A pull-request review comment as GitHub's REST API describes it (the fields Tamma reads)."""
    return {
        "author_association": association,
        "id": cid,
        "pull_request_review_id": 77,
        "path": "pager.py",
        "line": line,
        "original_line": 3,
        "side": "RIGHT",
        "in_reply_to_id": reply_to,
        "body": body,
        "user": user,
    }


async def test_review_threads_and_review_bodies(gh: tuple[FakeGitHub, GitHubPlatform]) -> None:
    fake, platform = gh
    pr = await open_pr(fake, platform)
    fake.review_comments[pr.number] = [
        line_comment(11, "alice", "Name the magic number", 4),
        line_comment(12, "bob", "and say pages are 1-based", None, reply_to=11),  # outdated line → original
        line_comment(13, "tamma-bot", "Done.", 4, reply_to=11),  # the bot's own reply asks nothing
        line_comment(20, "dave", "Old concern", 7),
        line_comment(21, "alice", "Agreed, fixed upstream", 7, reply_to=20),
    ] + [line_comment(100 + i, "carol", f"nit {i}", 9) for i in range(120)]  # more than one page
    fake.resolved = {20}  # dave's thread was resolved on GitHub: nothing in it is feedback
    fake.reviews[pr.number] = [
        {
            "id": 5,
            "user": "alice",
            "body": "Close; two things.",
            "state": "CHANGES_REQUESTED",
            "author_association": "OWNER",
        },
        {"id": 6, "user": "dave", "body": "LGTM", "state": "APPROVED"},
        {"id": 7, "user": "erin", "body": "", "state": "COMMENTED"},  # only line comments, no summary
        {"id": 8, "user": "erin", "body": "One question inline.", "state": "COMMENTED"},
    ]
    fake.log.clear()
    got = await platform.review_comments(pr)
    by_id = {c.id: c for c in got}
    assert (by_id[11].path, by_id[11].line, by_id[11].thread) == ("pager.py", 4, None)
    assert (by_id[12].author, by_id[12].line, by_id[12].thread) == ("bob", 3, 11)
    assert 13 not in by_id and len([c for c in got if c.author == "carol"]) == 120
    assert 20 not in by_id and 21 not in by_id
    assert [(c.id, c.verdict) for c in got if c.id < 0] == [(-5, "CHANGES_REQUESTED"), (-8, "COMMENTED")]
    assert (by_id[11].association, by_id[-5].association, by_id[-8].association) == ("MEMBER", "OWNER", "NONE")
    n = pr.number
    assert fake.calls() == [  # no extra fetch of the PR itself; every list paginated
        "POST /graphql",  # 122 threads: two pages of review threads
        "POST /graphql",
        f"GET /repos/octo/hello/pulls/{n}/comments?per_page=100",
        "GET /user",  # who the token is (asked once): its own comments are not feedback
        f"GET /repos/octo/hello/pulls/{n}/comments?page=2&per_page=100",
        f"GET /repos/octo/hello/pulls/{n}/reviews?per_page=100",
    ]


async def test_review_threads_without_graphql_are_all_read_and_outages_retry(
    gh: tuple[FakeGitHub, GitHubPlatform],
) -> None:
    fake, platform = gh
    pr = await open_pr(fake, platform)
    fake.review_comments[pr.number] = [line_comment(20, "dave", "Old concern", 7)]
    fake.resolved = {20}
    # a server or token without GraphQL: resolution is unknown, so the comment counts (once)
    fake.graphql_error = Reply(200, {"errors": [{"type": "FORBIDDEN", "message": "GraphQL is disabled"}]})
    assert [c.id for c in await platform.review_comments(pr)] == [20]
    fake.graphql_error = Reply(502, {"message": "Server Error"})  # an outage is not "no GraphQL"
    with pytest.raises(PlatformError) as info:
        await platform.review_comments(pr)
    assert info.value.retryable
    fake.graphql_error = None
    assert await platform.review_comments(pr) == []


async def test_a_graphql_rate_limit_answered_with_200_retries_and_is_not_read_as_no_graphql(
    gh: tuple[FakeGitHub, GitHubPlatform],
) -> None:
    """F1: GitHub reports a GraphQL rate limit as HTTP 200 with `errors: [{type: RATE_LIMITED}]`.
    Taken as "no GraphQL", every resolved thread would come back as feedback."""
    fake, platform = gh
    pr = await open_pr(fake, platform)
    fake.review_comments[pr.number] = [line_comment(20, "dave", "Old concern", 7)]
    fake.resolved = {20}
    limited = {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}
    fake.graphql_error = Reply(
        200, limited, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 40)}
    )
    with pytest.raises(PlatformError) as info:
        await platform.review_comments(pr)
    assert info.value.retryable and info.value.retry_after_s is not None and 30 <= info.value.retry_after_s <= 41
    fake.graphql_error = None
    assert await platform.review_comments(pr) == []  # the resolved thread, by its fullDatabaseId
    [query] = [body["query"] for method, path, body in fake.log if path == "/graphql"][-1:]
    assert "fullDatabaseId" in query and "databaseId }" not in query.replace("fullDatabaseId", "")


async def test_a_draft_pull_request_is_marked_ready_before_its_merge(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path
) -> None:
    """F2: with github.draft the PR opens as a draft; GitHub will not merge a draft (405)."""
    fake, platform = gh
    drafting = GitHubPlatform(REPO, platform.settings.model_copy(update={"draft": True}), bot_login="tamma-bot")
    await drafting.ensure_branch("b", "main")
    fake.remote.push_file("b", "fix.txt", "fixed\n", tmp_path)
    pr = await drafting.create_pull_request("b", "main", "Fix", "Fixes #1")
    assert fake.pulls[pr.number]["draft"] is True
    merged = await drafting.merge_pull_request(pr.number, sha=fake.remote.sha("b") or "")
    assert merged.merged and fake.pulls[pr.number]["merged"] and fake.pulls[pr.number]["draft"] is False
    mutations = [body["query"] for _, path, body in fake.log if path == "/graphql"]
    assert len(mutations) == 1 and "markPullRequestReadyForReview" in mutations[0]


async def test_as_a_github_app_its_own_comments_are_known_by_its_bot_login_and_by_marker(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path
) -> None:
    """F3: an App posts as `<slug>[bot]`, not as webhooks.bot_login; its "Addressed in" replies
    must not come back as review feedback, and a retried reply must not post twice."""
    fake, platform = gh
    private, public = app_keys()
    fake.app = (42, public, 7)
    (tmp_path / "app.pem").write_bytes(private)
    app = GitHubPlatform(REPO, as_app(platform.settings, tmp_path / "app.pem"), bot_login="tamma-bot")
    pr = await open_pr(fake, platform)
    fake.review_comments[pr.number] = [line_comment(11, "alice", "Name the magic number", 4)]
    feedback = await app.review_comments(pr)
    assert [c.id for c in feedback] == [11]
    assert await app.reply_to_reviews(pr, feedback, "c" * 40) == 1
    assert fake.review_comments[pr.number][-1]["user"] == "tamma-app[bot]"
    assert await app.reply_to_reviews(pr, feedback, "c" * 40) == 0  # the retry finds its reply
    # its reply is not feedback; nor is a marked comment from an identity it cannot see
    fake.review_comments[pr.number].append(
        line_comment(12, "someone-else", "Addressed in abc.\n\n<!-- tamma:reply:11:abc -->", 4, reply_to=11)
    )
    assert [c.id for c in await app.review_comments(pr)] == [11]
    assert fake.calls("GET").count("GET /app") == 1  # who the App is, asked once


async def test_replies_answer_each_thread_once_per_commit(gh: tuple[FakeGitHub, GitHubPlatform]) -> None:
    fake, platform = gh
    pr = await open_pr(fake, platform)
    fake.review_comments[pr.number] = [
        line_comment(11, "alice", "Name the magic number", 4),
        line_comment(12, "bob", "and say pages are 1-based", 4, reply_to=11),
        line_comment(30, "carol", "Typo", 9),
    ]
    feedback = await platform.review_comments(pr)
    feedback.append(ReviewComment(id=-5, author="alice", body="Close.", verdict="CHANGES_REQUESTED"))
    fake.log.clear()
    assert await platform.reply_to_reviews(pr, feedback, "a" * 40) == 2  # two threads; a review body has none
    assert await platform.reply_to_reviews(pr, feedback, "a" * 40) == 0  # a retry posts nothing twice
    n = pr.number
    assert fake.calls("POST") == [
        f"POST /repos/octo/hello/pulls/{n}/comments/11/replies",
        f"POST /repos/octo/hello/pulls/{n}/comments/30/replies",
    ]
    replies = [c for c in fake.review_comments[n] if c["user"] == "tamma-bot"]
    assert [(c["in_reply_to_id"], c["body"].splitlines()[0]) for c in replies] == [
        (11, "Addressed in aaaaaaaaaa."),
        (30, "Addressed in aaaaaaaaaa."),
    ]
    assert await platform.review_comments(pr) == feedback[:-1]  # Tamma's own replies are not feedback


async def test_open_issues_for_the_picker_skip_pull_requests_and_page(gh: tuple[FakeGitHub, GitHubPlatform]) -> None:
    fake, platform = gh
    for n in range(2, 150):
        fake.add_issue(n, f"Issue {n}", "")
    fake.issues[5]["pull_request"] = {"url": "x"}  # GitHub lists pull requests among issues
    fake.issues[6]["state"] = "closed"
    issues = await platform.open_issues()
    numbers = [i.number for i in issues]
    assert numbers == sorted(set(range(1, 150)) - {5, 6}, reverse=True)  # newest first, both pages
    assert len([c for c in fake.calls() if c.startswith("GET /repos/octo/hello/issues")]) >= 2, fake.calls()
    assert len(await platform.open_issues(limit=3)) == 3


async def test_merge_is_pinned_to_the_commit_ci_passed_on(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path
) -> None:
    """F5: a push after green CI is not merged untested; the merge names the tested head."""
    fake, platform = gh
    await platform.ensure_branch("tamma/issue-1", "main")
    fake.remote.push_file("tamma/issue-1", "fix.txt", "fixed\n", tmp_path)
    pr = await platform.create_pull_request("tamma/issue-1", "main", "Fix", "")
    tested = (await platform.ci_status(pr)).sha
    assert tested == fake.remote.sha("tamma/issue-1")
    fake.remote.push_file("tamma/issue-1", "late.txt", "untested\n", tmp_path)  # after CI went green
    with pytest.raises(MergeBlockedError, match="moved after CI passed") as info:
        await platform.merge_pull_request(pr.number, sha=tested)
    assert not info.value.retryable and not fake.pulls[pr.number]["merged"]
    merged = await platform.merge_pull_request(pr.number, sha=fake.remote.sha("tamma/issue-1") or "")
    assert merged.merged
    [put] = [body for method, path, body in fake.log if method == "PUT"]
    assert put["sha"] == fake.pulls[pr.number]["head_sha"]  # the SHA GitHub checks the head against


async def test_an_answer_linking_to_another_host_is_refused_not_followed(
    gh: tuple[FakeGitHub, GitHubPlatform], tmp_path: Path
) -> None:
    """A broken or hostile GitHub answer: the pull request's own `url` points at another host.
    PyGithub will not follow it (an assertion); Tamma turns that into a clear, final error."""
    fake, platform = gh
    pr = await open_pr(fake, platform)
    evil = {**fake._pull(fake.pulls[pr.number]), "url": "https://evil.test/repos/octo/hello/pulls/2"}
    fake.inject.append((f"GET .*/pulls/{pr.number}$", Reply(200, evil)))
    with pytest.raises(PlatformError) as info:
        await platform.merge_pull_request(pr.number)
    assert not info.value.retryable and "links to another host" in info.value.message
    assert "evil.test" in info.value.message and not fake.pulls[pr.number]["merged"]


@pytest.mark.parametrize(
    "message,waits",
    [
        ("At least 1 approving review is required by reviewers with write access.", True),
        ("Waiting on code owner review from octo/maintainers.", True),
        ('Required status check "ci/build" is expected.', True),
        ("Review required", True),
        ("Pull Request is not mergeable", False),  # conflicts: a person must act, waiting changes nothing
        ("Merge commits are not allowed on this repository.", False),
    ],
)
def test_a_merge_the_branch_protection_holds_is_waited_for_not_failed(message: str, waits: bool) -> None:
    from github import GithubException

    from tamma.errors import MergeBlockedError, MergeWaiting
    from tamma.platforms.github import map_github_error

    err = map_github_error(GithubException(405, {"message": message}, {}), "the merge of #2")
    assert isinstance(err, MergeBlockedError) and not err.retryable
    assert isinstance(err, MergeWaiting) is waits
