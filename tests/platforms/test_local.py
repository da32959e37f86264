"""The local platform over real git repositories, bare and not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tamma.agent.workspace import Workspace
from tamma.demo import make_sample_repo
from tamma.errors import InvalidInputError, MergeBlockedError, NotFoundError
from tamma.models import TestReport
from tamma.platforms.local import LocalPlatform, local_repo_ref, resolve_local_repo


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit_on_branch(repo: Path, branch: str, name: str, text: str) -> None:
    work = repo.parent / f"clone-{branch.replace('/', '-')}-{name}"
    git(repo.parent, "clone", "-q", "--branch", branch, str(repo), str(work))
    (work / name).write_text(text)
    git(work, "add", name)
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"add {name}")
    git(work, "push", "-q", "origin", f"HEAD:{branch}")


@pytest.fixture
def platform(tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(local_repo_ref(make_sample_repo(tmp_path / "repo")), tmp_path / "data")


def test_not_a_git_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is not a git repository; run `git init`"):
        resolve_local_repo(tmp_path)
    with pytest.raises(InvalidInputError, match="does not exist"):
        resolve_local_repo(tmp_path / "nope")


def test_subdirectory_resolves_to_repository_root(platform: LocalPlatform) -> None:
    (platform.path / "sub").mkdir()
    assert resolve_local_repo(platform.path / "sub") == platform.path


async def test_issues_are_numbered_stored_and_commented(platform: LocalPlatform, tmp_path: Path) -> None:
    a = platform.create_issue("First", "body")
    b = platform.create_issue("Second")
    assert (a.number, b.number) == (1, 2)
    await platform.comment_issue(1, "hello")
    again = LocalPlatform(platform.repo, tmp_path / "data")  # state survives a new instance
    assert (await again.get_issue(1)).title == "First"
    assert again.issue_comments(1)[0]["body"] == "hello"
    with pytest.raises(NotFoundError, match="issue #9 does not exist"):
        await again.get_issue(9)
    with pytest.raises(InvalidInputError):
        platform.create_issue("  ")


async def test_branch_pr_and_merge_are_idempotent(platform: LocalPlatform) -> None:
    sha = await platform.ensure_branch("tamma/issue-1", "main")
    assert await platform.ensure_branch("tamma/issue-1", "main") == sha
    commit_on_branch(platform.path, "tamma/issue-1", "new.txt", "hi\n")
    pr = await platform.create_pull_request("tamma/issue-1", "main", "T", "B")
    assert (await platform.create_pull_request("tamma/issue-1", "main", "T", "B")).number == pr.number
    assert len(platform.list_pull_requests()) == 1
    assert (await platform.ci_status(pr)).state == "pending"
    await platform.report_tests(
        git(platform.path, "rev-parse", "tamma/issue-1"),
        TestReport(passed=True, command="t", exit_code=0, summary="ok"),
    )
    assert (await platform.ci_status(pr)).state == "success"
    first = await platform.merge_pull_request(pr.number)
    second = await platform.merge_pull_request(pr.number)
    assert first.merged and second.already_merged and first.sha == second.sha
    assert git(platform.path, "show", "main:new.txt") == "hi"
    # The non-bare repo's checked-out work tree was updated too.
    assert (platform.path / "new.txt").read_text() == "hi\n"


async def test_merge_into_bare_repository(tmp_path: Path) -> None:
    source = make_sample_repo(tmp_path / "src")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    platform = LocalPlatform(local_repo_ref(bare), tmp_path / "data")
    await platform.ensure_branch("feature", "main")
    commit_on_branch(bare, "feature", "f.txt", "f\n")
    pr = await platform.create_pull_request("feature", await platform.default_branch(), "F", "")
    result = await platform.merge_pull_request(pr.number)
    assert git(bare, "show", "main:f.txt") == "f" and result.sha == git(bare, "rev-parse", "main")


async def test_concurrent_merges_into_one_repository_both_land(tmp_path: Path) -> None:
    """Two tasks merge at once (found by the polling test: the second push was rejected as
    "fetch first" and the task failed). In one process they take turns; from two processes the
    loser's push rejection is a retryable error, not a blocked merge."""
    import asyncio

    source = make_sample_repo(tmp_path / "src")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    platform = LocalPlatform(local_repo_ref(bare), tmp_path / "data")
    other = LocalPlatform(local_repo_ref(bare), tmp_path / "data")  # a second worker's view
    prs = []
    for name in ("a", "b", "c"):
        await platform.ensure_branch(name, "main")
        commit_on_branch(bare, name, f"{name}.txt", f"{name}\n")
        prs.append(await platform.create_pull_request(name, "main", name.upper(), ""))
    results = await asyncio.gather(
        *(p.merge_pull_request(pr.number) for p, pr in zip([platform, other, platform], prs, strict=True))
    )
    assert all(r.merged for r in results)
    assert [git(bare, "show", f"main:{n}.txt") for n in "abc"] == ["a", "b", "c"]


@pytest.mark.parametrize("moment", ["update-ref", "push"], ids=["in-place", "clone-fallback"])
async def test_a_merge_that_lost_a_race_is_retryable_not_blocked(
    tmp_path: Path, moment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's merge lands between this merge's computing and its moving the base: the
    compare-and-swap of `update-ref` (or, on a git without merge-tree --write-tree, the push) fails
    and the merge is retried onto the new base."""
    import tamma.platforms.local as local_module
    from tamma.errors import PlatformError

    source = make_sample_repo(tmp_path / "src")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    platform = LocalPlatform(local_repo_ref(bare), tmp_path / "data")
    await platform.ensure_branch("b", "main")
    commit_on_branch(bare, "b", "b.txt", "b\n")
    pr = await platform.create_pull_request("b", "main", "B", "")
    original_git = local_module.git
    moved: list[str] = []

    if moment == "push":  # the fallback path: as on a git older than 2.38

        async def no_merge_tree(self: LocalPlatform, pr: object, head: str) -> None:
            return None

        monkeypatch.setattr(LocalPlatform, "_merge_in_place", no_merge_tree)

    async def git_moving_base(*args: str, **kw: object) -> str:
        if args and args[0] == moment and not moved:
            moved.append("x")
            commit_on_branch(bare, "main", "elsewhere.txt", "x\n")
        return await original_git(*args, **kw)  # type: ignore[arg-type]

    local_module.git = git_moving_base  # type: ignore[assignment]
    try:
        with pytest.raises(PlatformError) as info:
            await platform.merge_pull_request(pr.number)
    finally:
        local_module.git = original_git
    assert info.value.retryable and not isinstance(info.value, MergeBlockedError)
    assert "moved during the merge" in info.value.message
    assert (await platform.merge_pull_request(pr.number)).merged  # the retry lands on the new base
    assert git(bare, "show", "main:elsewhere.txt") == "x" and git(bare, "show", "main:b.txt") == "b"


async def test_merge_refused_when_target_work_tree_is_dirty(platform: LocalPlatform) -> None:
    await platform.ensure_branch("b", "main")
    commit_on_branch(platform.path, "b", "README.md", "changed on the branch\n")
    (platform.path / "README.md").write_text("uncommitted local edit\n")
    pr = await platform.create_pull_request("b", "main", "B", "")
    with pytest.raises(MergeBlockedError, match="commit or stash"):
        await platform.merge_pull_request(pr.number)
    assert (platform.path / "README.md").read_text() == "uncommitted local edit\n"  # nothing lost


async def test_merge_conflict_is_blocked(platform: LocalPlatform) -> None:
    await platform.ensure_branch("b", "main")
    commit_on_branch(platform.path, "b", "pager.py", "branch version\n")
    (platform.path / "pager.py").write_text("main version\n")
    git(platform.path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "main edit")
    pr = await platform.create_pull_request("b", "main", "B", "")
    with pytest.raises(MergeBlockedError, match="does not merge cleanly"):
        await platform.merge_pull_request(pr.number)
    assert platform.list_pull_requests()[0].state == "open"


async def test_review_comments_and_replies_kept_apart(platform: LocalPlatform) -> None:
    await platform.ensure_branch("tamma/issue-1", "main")
    commit_on_branch(platform.path, "tamma/issue-1", "new.txt", "hi\n")
    pr = await platform.create_pull_request("tamma/issue-1", "main", "T", "B")
    platform.add_review_comment(pr.number, "alice", "Name the constant", path="new.txt")
    feedback = await platform.review_comments(pr)
    assert [(c.author, c.path) for c in feedback] == [("alice", "new.txt")]
    assert await platform.reply_to_reviews(pr, feedback, "c" * 40) == 1
    assert await platform.reply_to_reviews(pr, feedback, "c" * 40) == 0  # once per commit
    assert await platform.reply_to_reviews(pr, feedback, "d" * 40) == 1  # a later commit answers again
    assert await platform.review_comments(pr) == feedback  # replies are not feedback


def test_no_file_lock_is_held_across_an_await(tmp_path: Path) -> None:
    """A coroutine opening a PR while another coroutine on the same loop writes an issue record:
    with the store's file lock held across an await, the second one's (blocking) lock froze the
    event loop for good. Run in a child process so the old behaviour fails by timeout, not hang."""
    import subprocess
    import sys
    import textwrap

    repo = make_sample_repo(tmp_path / "repo")
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from tamma.platforms.local import LocalPlatform, local_repo_ref

        async def main():
            p = LocalPlatform(local_repo_ref({str(repo)!r}), Path({str(tmp_path / "data")!r}))
            await p.ensure_branch("feature", "main")

            async def meanwhile():
                await asyncio.sleep(0)
                p.create_issue("written while a PR is being opened")

            await asyncio.gather(p.create_pull_request("feature", "main", "t", "b"), meanwhile())
            print("done", len(p.list_pull_requests()), len(p.list_issues()))

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["done", "1", "1"]


async def test_merge_is_pinned_to_the_commit_ci_passed_on(tmp_path: Path) -> None:
    repo = make_sample_repo(tmp_path / "repo")
    platform = LocalPlatform(local_repo_ref(repo), tmp_path / "data")
    await platform.ensure_branch("feature", "main")
    ws = await Workspace.clone(str(repo), "feature", tmp_path / "work")
    (ws.root / "a.py").write_text("a = 1\n")
    tested = await ws.commit_and_push("tested", 1, "T", "t@x")
    pr = await platform.create_pull_request("feature", "main", "t", "b")
    assert (await platform.ci_status(pr)).sha == tested
    (ws.root / "b.py").write_text("b = 1\n")
    await ws.commit_and_push("pushed after CI", 2, "T", "t@x")
    with pytest.raises(MergeBlockedError, match="moved after CI passed"):
        await platform.merge_pull_request(pr.number, sha=tested)
    assert not (repo / "a.py").exists()  # nothing untested reached main


def test_issues_created_from_several_processes_at_once_get_distinct_numbers(tmp_path: Path) -> None:
    """The records' lock holds across processes (the CLI and workers share them): three processes
    each create 15 issues at once; without the lock two would read the same highest number and
    one issue would overwrite another."""
    import sys

    repo = make_sample_repo(tmp_path / "repo")
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from tamma.platforms.local import LocalPlatform, local_repo_ref\n"
        "p = LocalPlatform(local_repo_ref(sys.argv[1]), Path(sys.argv[2]))\n"
        "for i in range(15):\n    p.create_issue(f'{sys.argv[3]}-{i}')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(repo), str(tmp_path / "data"), name]) for name in "abc"
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    issues = LocalPlatform(local_repo_ref(repo), tmp_path / "data").list_issues()
    assert len(issues) == 45
    assert sorted(i.number for i in issues) == list(range(1, 46))
    assert {i.title for i in issues} == {f"{n}-{i}" for n in "abc" for i in range(15)}


async def test_a_merge_needs_no_clone_and_its_checked_out_base_follows(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_clone(self: LocalPlatform, pr: object) -> str:
        raise AssertionError("the merge cloned the repository")

    monkeypatch.setattr(LocalPlatform, "_merge_and_push", no_clone)
    await platform.ensure_branch("b", "main")
    commit_on_branch(platform.path, "b", "added.txt", "from the branch\n")
    pr = await platform.create_pull_request("b", "main", "B", "")
    merged = await platform.merge_pull_request(pr.number)
    assert merged.merged and git(platform.path, "rev-parse", "main") == merged.sha
    assert git(platform.path, "log", "-1", "--format=%s %an", "main") == "Merge !1: B Tamma"
    assert (platform.path / "added.txt").read_text() == "from the branch\n"  # the checked-out files followed
    assert git(platform.path, "status", "--porcelain") == ""  # index and files agree with main


async def test_an_untracked_file_in_the_way_blocks_the_merge_and_is_kept(platform: LocalPlatform) -> None:
    await platform.ensure_branch("b", "main")
    commit_on_branch(platform.path, "b", "notes.txt", "from the branch\n")
    (platform.path / "notes.txt").write_text("the user's own notes, never committed\n")
    before = git(platform.path, "rev-parse", "main")
    pr = await platform.create_pull_request("b", "main", "B", "")
    with pytest.raises(MergeBlockedError, match="move the file away"):
        await platform.merge_pull_request(pr.number)
    assert (platform.path / "notes.txt").read_text() == "the user's own notes, never committed\n"
    assert git(platform.path, "rev-parse", "main") == before  # the base did not move


async def test_a_base_checked_out_in_a_linked_worktree_follows_the_merge(tmp_path: Path) -> None:
    source = make_sample_repo(tmp_path / "src")
    git(source, "checkout", "-q", "-b", "elsewhere")  # main is free to be checked out elsewhere
    linked = tmp_path / "linked"
    git(source, "worktree", "add", "-q", str(linked), "main")
    platform = LocalPlatform(local_repo_ref(source), tmp_path / "data")
    await platform.ensure_branch("b", "main")
    commit_on_branch(source, "b", "added.txt", "x\n")
    pr = await platform.create_pull_request("b", "main", "B", "")
    assert (await platform.merge_pull_request(pr.number)).merged
    assert (linked / "added.txt").read_text() == "x\n" and git(linked, "status", "--porcelain") == ""
    assert not (source / "added.txt").exists()  # the main worktree is on another branch
