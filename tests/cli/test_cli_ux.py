"""The CLI as a person meets it: untrusted text shown literally, `list` that validates and pages,
retries shown on the step line (never a traceback), Ctrl-C at the approval prompt, --version."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import pytest

from tamma.config import Settings
from tamma.demo import make_sample_repo
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.background import running_pid
from tests.cli.conftest import tamma
from tests.standins import anthropic_api
from tests.standins.demo_brain import anthropic_brain
from tests.standins.http import Reply, Request, serve

pytestmark = pytest.mark.slow


@contextmanager
def in_terminal(env: dict[str, str], cwd: Path, *args: str, rows: int = 40, cols: int = 160) -> Iterator[pexpect.spawn]:
    """`tamma ARGS` on a real pseudo-terminal (prompts, full-screen UI and Ctrl-C as a person has
    them); ended on the way out if the test left it running."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tamma", *args],
        env=env,
        cwd=str(cwd),
        encoding="utf-8",
        timeout=60,
        dimensions=(rows, cols),
    )
    try:
        yield child
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_version(cli_env: dict[str, str]) -> None:
    from importlib.metadata import version

    done = tamma(cli_env, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"tamma {version('tamma')}"
    about = json.loads(tamma(cli_env, "version", "--json").stdout)
    assert about["tamma"] == version("tamma") and about["temporalio"] == version("temporalio")
    assert about["python"].startswith("CPython 3.") and about["temporal_cli"].startswith("1.")


def test_a_read_only_home_costs_the_log_file_not_the_command(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A hardened container (read-only root, no writable home): commands still run."""
    locked = tmp_path / "a-file"  # a directory under a file cannot be made, even by root
    locked.write_text("")
    env = dict(cli_env, XDG_STATE_HOME=str(locked / "state"), XDG_CACHE_HOME=str(locked / "cache"))
    done = tamma(env, "config", "schema")
    assert done.returncode == 0 and json.loads(done.stdout)["title"], done.stderr
    assert "Traceback" not in done.stderr
    debug = tamma(env, "--debug", "config", "schema")
    assert debug.returncode == 0 and "no log file" in debug.stderr


def test_markup_in_an_issue_title_is_shown_literally(cli_env: dict[str, str], repo: Path) -> None:
    title = "Fix [/] the off-by-one in paginate [bold red]now[/bold red] \\[x]"
    assert tamma(cli_env, "issue", "create", title, cwd=repo).returncode == 0
    run = tamma(cli_env, "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
    assert run.returncode == 0, run.stdout + run.stderr
    status = tamma(cli_env, "status", "1", cwd=repo)
    assert status.returncode == 0, status.stderr
    assert title in status.stdout and "Traceback" not in status.stdout + status.stderr


def test_list_validates_pages_and_speaks_json(cli_env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    bogus = tamma(cli_env, "list", "--status", "bogus")
    assert bogus.returncode == 2 and "bogus" in bogus.stderr and "merged" in bogus.stderr  # the choices
    repos = [repo, make_sample_repo(tmp_path / "second")]
    for r in repos:
        assert tamma(cli_env, "issue", "create", "Fix off-by-one in paginate()", cwd=r).returncode == 0
        assert tamma(cli_env, "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT), cwd=r).returncode == 0
    ids = {f"tamma:local:{r}#1" for r in repos}
    deadline = time.monotonic() + 20
    while True:  # visibility is eventually consistent
        rows = json.loads(tamma(cli_env, "list", "--json", "--status", "merged").stdout)
        if ids <= {r["workflow_id"] for r in rows} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ids <= {r["workflow_id"] for r in rows} and all(r["status"] == "merged" for r in rows)
    one = tamma(cli_env, "list", "--limit", "1")
    assert "more tasks than 1" in one.stdout and "tamma list --limit 2" in one.stdout
    narrow = tamma(dict(cli_env, COLUMNS="60"), "list", "--repository", f"local:{repo}")
    assert f"tamma:local:{repo}#1" in narrow.stdout.replace("\n", "").replace(" ", "").replace("│", "")


def test_a_retried_step_is_a_line_not_a_traceback(cli_env: dict[str, str], repo: Path) -> None:
    key = "sk-ant-FAKE-cli-retry"
    limited: list[Request] = []

    def once_500(req: Request) -> Reply | None:
        # (a 429 is waited out inside the step now; a 5xx is what Temporal retries)
        if not limited:
            limited.append(req)
            return anthropic_api.error(500, "api_error", "Internal server error", {"retry-after": "2"})
        return None

    assert tamma(cli_env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo).returncode == 0
    with serve(anthropic_brain(key, before=once_500)) as model:
        env = dict(cli_env, ANTHROPIC_API_KEY=key, ANTHROPIC_BASE_URL=model.url, TAMMA_WORKFLOW__RETRY_INITIAL_S="2")
        run = tamma(env, "start", "--issue", "1", cwd=repo)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Traceback" not in out, out
    assert "unavailable (500)" in out, out  # the reason, on the step line
    assert "retrying" in out and "attempt 2/3" in out
    assert "Merged tamma/issue-1" in out


def test_ctrl_c_at_the_approval_prompt_detaches_cleanly(
    cli_env: dict[str, str], repo: Path, settings: Settings
) -> None:
    env = dict(cli_env, TAMMA_APPROVAL__AUTO_APPROVE="false")
    assert tamma(env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo).returncode == 0
    try:
        with in_terminal(env, repo, "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT)) as child:
            child.expect("Approve this plan\\? \\[y/n\\]: ")
            child.sendintr()  # Ctrl-C, through the terminal
            child.expect("Detached from")
            child.expect(pexpect.EOF, timeout=20)  # and it ends: no prompt left reading stdin
            child.close()
            assert child.exitstatus == 130
            status = tamma(env, "status", "1", cwd=repo)
            assert "[awaiting_approval]" in status.stdout  # the task waits, durable
    finally:
        tamma(env, "temporal", "stop")
    assert running_pid(settings.data_dir) is None


def test_the_prompt_takes_an_answer_through_a_terminal(cli_env: dict[str, str], repo: Path) -> None:
    env = dict(cli_env, TAMMA_APPROVAL__AUTO_APPROVE="false")
    assert tamma(env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo).returncode == 0
    with in_terminal(env, repo, "start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT)) as child:
        child.expect("Approve this plan\\? \\[y/n\\]: ")
        child.sendline("maybe")
        child.expect("Please answer y or n")
        child.sendline("y")
        child.expect(r"tamma/issue-1 as [0-9a-f]{10}")
        child.expect(pexpect.EOF)


def test_start_warns_when_a_running_worker_has_other_settings(cli_env: dict[str, str], repo: Path) -> None:
    """A worker started before a setting changed keeps its old settings: `tamma start` says so."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    old = dict(cli_env, TAMMA_AGENT__TEST_COMMAND="python3 -m unittest")
    worker = subprocess.Popen(
        [sys.executable, str(root / "worker.py")],
        env=old,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tamma(cli_env, "issue", "create", "Fix off-by-one in paginate()", cwd=repo).returncode == 0
        new = dict(cli_env, TAMMA_AGENT__TEST_COMMAND="python3 -m unittest -v")
        deadline = time.monotonic() + 30
        while True:  # until the worker's first poll is visible
            run = tamma(new, "start", "--issue", "1", "--detach", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
            if "other than this shell" in run.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "other than this shell" in run.stdout and f"tamma-worker-{worker.pid}@" in run.stdout, run.stdout
        same = tamma(old, "start", "--issue", "1", "--detach", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
        assert same.returncode == 0 and "Attached to" in same.stdout
        assert "other than this shell" not in same.stdout  # the worker's own settings: no warning
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def test_init_wizard_through_a_terminal_writes_a_private_valid_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "conf" / "tamma.toml"
    env = dict(cli_env, GITHUB_TOKEN="ghp_wizard_token_0123", ANTHROPIC_API_KEY="sk-ant-wizard-0123")
    with in_terminal(env, tmp_path, "init") as child:
        child.expect("Write the config to")
        child.sendline(str(target))
        child.expect("Where are your issues")
        child.sendline("gihtub")  # a typo: asked again
        child.expect("Please select one of the available options")
        child.sendline("github")
        child.expect("github token")
        child.sendline("")  # the default: env:GITHUB_TOKEN
        child.expect("API base URL")
        child.sendline("")
        child.expect("Which model provider")
        child.sendline("anthropic")
        child.expect("Anthropic API key")
        child.sendline("")
        child.expect("Approve low-risk plans automatically")
        child.sendline("n")
        child.expect("Webhook secret")
        child.sendline("")  # generate
        child.expect("Wrote")
        child.expect(pexpect.EOF)
    text = target.read_text()
    assert (target.stat().st_mode & 0o777) == 0o600
    assert 'token = "env:GITHUB_TOKEN"' in text and "ghp_wizard_token_0123" not in text  # a reference, not the value
    assert "auto_approve = false" in text
    checked = tamma(env, "--config", str(target), "config", "validate")
    assert checked.returncode == 0 and "valid" in checked.stdout, checked.stdout + checked.stderr
    shown = tamma(env, "--config", str(target), "config", "show", "--sources")
    row = next(line for line in shown.stdout.splitlines() if line.startswith("github.token"))
    assert "********" in row and "ghp_wizard_token_0123" not in shown.stdout
    assert "tamma.toml:" in next(line for line in shown.stdout.splitlines() if line.startswith("approval.auto_approve"))


def test_init_non_interactive_refuses_to_overwrite(cli_env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "tamma.toml"
    target.write_text("# mine\n")
    done = tamma(cli_env, "init", "--non-interactive", "--path", str(target), cwd=tmp_path)
    assert done.returncode == 2 and target.read_text() == "# mine\n"  # usage: it says to pass --force
    assert "exists; pass --force to overwrite it" in " ".join(done.stdout.split())
    done = tamma(
        cli_env, "init", "--non-interactive", "--path", str(target), "--force", "--provider", "none", cwd=tmp_path
    )
    assert done.returncode == 0 and "[approval]" in target.read_text()


def test_start_without_an_issue_opens_a_picker(cli_env: dict[str, str], repo: Path) -> None:
    for title, body in (
        ("Add a changelog", "Keep a CHANGELOG.md."),
        ("Fix off-by-one in paginate()", "page 1 returns the second page; see pager.py"),
        ("Document the [/] markup", "Text with [bold]markup[/bold] shown as is."),
    ):
        assert tamma(cli_env, "issue", "create", title, "--body", body, cwd=repo).returncode == 0
    with in_terminal(cli_env, repo, "start", "--transcript", str(DEMO_TRANSCRIPT), rows=30, cols=140) as child:
        child.expect("search:")
        child.expect("Document the")  # newest first, preview of the highlighted one
        child.send("pagn")  # fuzzy: the letters in order
        child.expect("page 1 returns the second page")  # the preview follows the filter
        child.send("\r")
        child.expect(r"tamma:local:.*#2")
        child.expect(r"tamma/issue-2 as [0-9a-f]{10}")
        child.expect(pexpect.EOF)


def test_start_without_an_issue_and_without_a_terminal_says_what_to_do(cli_env: dict[str, str], repo: Path) -> None:
    done = tamma(cli_env, "start", cwd=repo)
    assert done.returncode != 0 and "pass --issue N" in done.stderr


def test_fuzzy_rank_prefers_tight_matches() -> None:
    from tamma.cli.picker import fuzzy_rank
    from tamma.models import Issue

    issues = [
        Issue(number=1, title="paginate bug"),
        Issue(number=2, title="p a g i n a t e"),
        Issue(number=3, title="x"),
    ]
    assert [i.number for i in fuzzy_rank("pagin", issues)] == [1, 2]
    assert [i.number for i in fuzzy_rank("#3", issues)] == [3]
    assert [i.number for i in fuzzy_rank("", issues)] == [3, 2, 1]


def test_debug_names_its_log_file_and_the_banner_is_for_terminals_only(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(cli_env, XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path))
    done = tamma(env, "--debug", "config", "path", cwd=tmp_path)
    line = next(x for x in done.stderr.splitlines() if x.startswith("debug log: "))
    assert Path(line.removeprefix("debug log: ").strip()).is_file()
    piped = tamma(env, "init", "--non-interactive", "--path", str(tmp_path / "a.toml"), cwd=tmp_path)
    assert piped.returncode == 0 and "Tamma 0." not in piped.stdout  # no banner in a pipe
    with in_terminal(env, tmp_path, "init", "--non-interactive", "--path", str(tmp_path / "b.toml")) as child:
        child.expect(r"Tamma\S* \d+\.\d+")  # the banner, on a terminal (styled)
        child.expect(pexpect.EOF)


def test_every_command_has_help_that_loads(cli_env: dict[str, str]) -> None:
    """The CLI imports its heavy parts (the Temporal SDK, FastAPI, the model SDKs) only when a
    command runs; every command's --help must still load, signatures and all."""
    import typer
    from typer.testing import CliRunner

    from tamma.cli.main import app

    def walk(command: object, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in getattr(command, "commands", {}).items():
            found += walk(sub, [*path, name])
        return found

    paths = walk(typer.main.get_command(app), [])
    assert len(paths) > 20
    failed = [(p, r.output[-200:]) for p in paths if (r := CliRunner().invoke(app, [*p, "--help"])).exit_code != 0]
    assert not failed, failed
    # and a bare `tamma --help` in a fresh process, exit included, loads none of the slow parts
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tamma", "--help"], env=cli_env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-500:]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in loaded and "tamma.cli.main" in loaded  # the probe sees imports at all
    slow = ("temporalio", "fastapi", "anthropic", "openai", "pydantic", "asyncio", "tamma.models", "tamma.config")
    assert not loaded.intersection(slow), sorted(loaded.intersection(slow))


def test_a_final_failure_says_it_is_final_and_what_to_do(cli_env: dict[str, str], repo: Path) -> None:
    from tests.cli.conftest import tamma

    broken = repo.parent / "broken.json"  # its analysis is not a valid Analysis: a non-retryable failure
    broken.write_text(
        json.dumps({"format": "tamma-transcript/1", "exchanges": [{"purpose": "analysis", "response": {"x": 1}}]})
    )
    tamma(cli_env, "issue", "create", "Fix the off-by-one in paginate() (retried)", cwd=repo)
    run = tamma(cli_env, "start", "--issue", "1", "--transcript", str(broken), cwd=repo)
    out = " ".join(run.stdout.split())
    assert run.returncode == 1 and "failed:" in out
    assert "This is final (no retry is scheduled)" in out and "tamma retry 1" in out
    assert "will retry" not in out
    # `tamma retry` runs it as it was started: the same recording (this shell configures no model)
    again = tamma(cli_env, "retry", "1", cwd=repo)
    assert again.returncode == 1 and "not a valid Analysis" in " ".join(again.stdout.split()), again.stdout
    assert f"LLM: scripted replay of {broken.name}" in again.stdout
    # ... unless told otherwise: the demo's recording fixes it
    from tamma.providers.scripted import DEMO_TRANSCRIPT

    fixed = tamma(cli_env, "retry", "1", "--transcript", str(DEMO_TRANSCRIPT), cwd=repo)
    assert fixed.returncode == 0 and "Merged" in fixed.stdout, fixed.stdout + fixed.stderr


def test_init_asks_before_overwriting_and_hides_a_typed_key(cli_env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "tamma.toml"
    target.write_text("# mine\n")
    with in_terminal(cli_env, tmp_path, "init", "--path", str(target)) as child:
        child.expect("exists. Overwrite it")
        child.sendline("n")
        child.expect("nothing written")
        child.expect(pexpect.EOF)
    assert target.read_text() == "# mine\n"
    typed = "sk-ant-typed-by-hand-4242"
    with in_terminal(cli_env, tmp_path, "init", "--path", str(target), "--force") as child:
        child.expect("Where are your issues")
        child.sendline("local")
        child.expect("Which model provider")
        child.sendline("anthropic")
        child.expect("typing is hidden")
        child.sendline(typed)
        child.expect("Approve low-risk plans automatically")
        shown = child.before
        child.sendline("y")
        child.expect(pexpect.EOF)
    assert typed not in shown  # not echoed to the screen
    assert typed in target.read_text() and (target.stat().st_mode & 0o777) == 0o600


def test_config_validate_exit_codes_match_its_help(cli_env: dict[str, str], tmp_path: Path) -> None:
    from tests.cli.conftest import tamma

    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("[worker]\nconcurrency = 2\n")
    bad.write_text("[worker]\nconcurency = 2\n")
    assert tamma(cli_env, "config", "validate", str(good)).returncode == 0
    invalid = tamma(cli_env, "config", "validate", str(bad))
    assert invalid.returncode == 1 and "concurency" in invalid.stderr
    assert tamma(cli_env, "config", "validate", "--no-such-flag").returncode == 2
    help_text = " ".join(tamma(cli_env, "config", "validate", "--help").stdout.split())
    assert "0 valid" in help_text and "1 invalid" in help_text and "2 usage" in help_text
