"""Following a task live, asking for approval, and detaching on Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

from rich.live import Live
from rich.markup import escape
from rich.text import Text
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from tamma.cli.common import who
from tamma.cli.render import plan_panel, step_line, steps_table
from tamma.cli.session import Session
from tamma.models import StepName, TaskState, TaskStatus


class Detached(Exception):
    """The user pressed Ctrl-C: stop watching, leave the workflow running."""


async def follow(session: Session, wid: str, *, interactive: bool, poll_s: float = 0.25) -> TaskState:
    """Show the task until it finishes; on Ctrl-C raise Detached (the workflow goes on)."""
    detach = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, detach.set)
    try:
        watcher = asyncio.create_task(_watch(session, wid, interactive, poll_s))
        stopper = asyncio.create_task(detach.wait())
        done, _ = await asyncio.wait([watcher, stopper], return_when=asyncio.FIRST_COMPLETED)
        if watcher in done:
            stopper.cancel()
            return watcher.result()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        raise Detached()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _watch(session: Session, wid: str, interactive: bool, poll_s: float) -> TaskState:
    console = session.console
    asked = False
    printed: dict[int, str] = {}
    plan_shown = False
    live = Live(console=console, refresh_per_second=10, transient=False) if console.is_terminal else None
    if live:
        live.start()
    note, polls = "", 0
    try:
        while True:
            state = await session.tasks.state(wid)
            if polls % 4 == 0:  # about once a second: is a step waiting to be retried?
                note = await session.tasks.retry_note(wid) if state.status == TaskStatus.RUNNING else ""
            polls += 1
            if live:
                live.update(steps_table(state, note))
            else:
                _print_changes(state, printed, console.print, note)
            if state.plan and not plan_shown and state.status == TaskStatus.AWAITING_APPROVAL and live:
                plan_shown = True
                live.stop()
                console.print(plan_panel(state.plan))
            if state.status == TaskStatus.AWAITING_APPROVAL and not asked:
                asked = True
                _pause(live, lambda: None)
                await _ask(session, wid, state, interactive)
                if live:
                    live.start()
            if state.status.finished:
                return await _closed(session, wid, state)
            await asyncio.sleep(poll_s)
    finally:
        if live:
            live.stop()


async def _closed(session: Session, wid: str, state: TaskState, wait_s: float = 60.0) -> TaskState:
    """The status is final, but the workflow may still be posting its last progress update, and
    this process's worker may be the one to do it: wait (bounded) for the workflow to close, so
    leaving does not strand that step until some other worker comes by."""
    try:
        return await asyncio.wait_for(session.tasks.result(wid), timeout=wait_s)
    except (WorkflowFailureError, RPCError, TimeoutError):  # cancelled ones fail; the state says why
        return state


def _pause(live: Live | None, action: Callable[[], object]) -> None:
    if live:
        live.stop()
    action()


def _print_changes(state: TaskState, printed: dict[int, str], out: Callable[[object], None], note: str = "") -> None:
    for n, record in enumerate(state.steps):
        if record.status != "running" and printed.get(n) != record.status:
            printed[n] = record.status
            out(step_line(record))
            if record.name == StepName.PLAN and state.plan:
                out(plan_panel(state.plan))
        elif record.status == "running" and note and printed.get(n) != note:
            printed[n] = note  # a retry: say so once per change, on the step's own line
            out(step_line(record, note))


async def _ask(session: Session, wid: str, state: TaskState, interactive: bool) -> None:
    console = session.console
    reasons = next((s.detail for s in reversed(state.steps) if s.name.value == "approval"), "")
    console.print(f"[yellow]Approval needed[/] ({escape(reasons)})")
    if not (interactive and sys.stdin.isatty()):
        console.print(
            f"Waiting for a decision: [bold]tamma approve {escape(wid)}[/] or "
            f"[bold]tamma reject {escape(wid)} --reason ...[/]"
        )
        return
    while (answer := (await _read_line(session, "Approve this plan? [y/n]: ")).lower()) not in ("y", "yes", "n", "no"):
        console.print("Please answer y or n.")
    if answer.startswith("y"):
        await session.tasks.approve(wid, by=who())
    else:
        reason = await _read_line(session, "Reason (rejected at the prompt): ") or "rejected at the prompt"
        await session.tasks.reject(wid, by=who(), reason=reason)


async def _read_line(session: Session, prompt: str) -> str:
    """A line from the terminal, read on the event loop: Ctrl-C (which cancels the watcher)
    ends the wait at once, and no thread is left reading stdin after the CLI detached."""
    session.console.print(Text(prompt), end="")
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        line = sys.stdin.readline()
        if not answer.done():
            answer.set_result(line)

    loop.add_reader(fd, readable)
    try:
        line = await answer
    finally:
        loop.remove_reader(fd)
    if not line:
        raise Detached()  # end of input: nobody is there to answer
    return line.strip()
