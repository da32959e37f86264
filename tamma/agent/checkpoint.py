"""What a coding attempt has done so far, kept where its next attempt finds it.

After each turn that wrote files, the implement step puts a checkpoint in its heartbeat: the
text of every file the agent wrote, the turns it took, its last words. Temporal hands the last
heartbeat to the next attempt of the same step (a worker killed, a deploy, a model outage that
outlasted the retries), which restores those files on its fresh clone and tells the model where
it stands, instead of starting the iteration from nothing and paying for it twice.

Bounded (heartbeats are small; a step that fails for good carries its last one into the
workflow's history): only text files, at most MAX_BYTES in all; a file holding one of Tamma's
secrets is never kept. What `run` changed without the agent writing it (a formatter, a code
generator) is not kept: the model is told to run it again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from pydantic import BaseModel, Field

from tamma.agent.safefs import UnsafePath, read_beneath, write_file

MAX_BYTES = 200_000


class Checkpoint(BaseModel):
    iteration: int
    turns: int
    #: path → its text now; None: the agent deleted it
    files: dict[str, str | None] = Field(default_factory=dict)
    #: written but not kept (binary, too big, or holding a secret)
    skipped: list[str] = Field(default_factory=list)
    note: str = ""


def take(
    root: Path, written: Collection[str], iteration: int, turns: int, note: str, redact: Callable[[str], str]
) -> Checkpoint:
    files: dict[str, str | None] = {}
    skipped: list[str] = []
    size = 0
    for path in sorted(written):
        target = root / path
        if not target.exists() and not target.is_symlink():
            files[path] = None  # the agent deleted it
            continue
        try:
            data = read_beneath(root, path, MAX_BYTES)
        except UnsafePath:  # a link on the way, no regular file, too big: never followed, never kept
            data = None
        if data is None:
            skipped.append(path)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(path)
            continue
        if redact(text) != text or size + len(data) > MAX_BYTES:
            skipped.append(path)
            continue
        files[path] = text
        size += len(data)
    return Checkpoint(iteration=iteration, turns=turns, files=files, skipped=skipped, note=note[-1500:])


def restore(cp: Checkpoint, resolve: Callable[[str], Path]) -> list[str]:
    """Write the checkpoint's files into a workspace; `resolve` (Workspace.resolve) refuses a
    path that leaves it or enters .git. Returns the paths restored."""
    done: list[str] = []
    for path, text in cp.files.items():
        target = resolve(path)
        if text is None:
            if target.is_file() and not target.is_symlink():
                target.unlink()
                done.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_file(target, text.encode("utf-8"))
        done.append(path)
    return done


def resume_note(cp: Checkpoint, restored: list[str]) -> str:
    """What the model is told when it picks up an interrupted attempt."""
    lines = [
        f"An earlier attempt of this step was interrupted after {cp.turns} turn(s) (its worker stopped or the "
        "model did not answer). Its edits are already in the workspace — do not start over:",
        *(f"- {p}" for p in restored),
    ]
    if cp.skipped:
        lines.append("Not kept (redo them if they are needed): " + ", ".join(cp.skipped))
    if cp.note.strip():
        lines.append(f"Its last words: {cp.note.strip()}")
    lines.append("Read the files you need, run the tests, and continue from there.")
    return "\n".join(lines)
