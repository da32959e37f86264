"""One logging setup for the server, the workers and the CLI's --debug file: JSON lines (or a
human format on a terminal) with a timestamp, level, logger, message and the context the line was
written in — the task (workflow id, repository, issue), the activity and its attempt, the webhook
delivery, the trace and span when tracing is on — every line through the same secret redaction.

The standard library is enough: a record factory captures the context where the record is made
(the emitting task's contextvars and Temporal's activity context; a queue handler may format it
on another thread later), and a formatter writes it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import IO, Any, Literal

from tamma.redact import Redactor

Format = Literal["auto", "json", "human"]
_bound: ContextVar[dict[str, Any] | None] = ContextVar("tamma_log_context", default=None)
_installed = False
#: the secrets every log line is cleaned of (settings' secrets, added as they are loaded)
REDACT = Redactor()


def add_secrets(secrets: Sequence[str]) -> None:
    REDACT.add(*[s for s in secrets if s])


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Every line logged inside carries `fields` (e.g. the webhook delivery being handled)."""
    token = _bound.set({**(_bound.get() or {}), **{k: v for k, v in fields.items() if v not in (None, "")}})
    try:
        yield
    finally:
        _bound.reset(token)


def bound_task(workflow_id: str) -> contextlib.AbstractContextManager[None]:
    """Every line logged inside carries the task (its workflow id, repository and issue)."""
    return bound(**_task_fields(workflow_id))


def _task_fields(workflow_id: str) -> dict[str, Any]:
    """A task's workflow id is `tamma:<platform>:<locator>#<issue>`: name its parts too."""
    out: dict[str, Any] = {"task": workflow_id}
    if workflow_id.startswith("tamma:") and "#" in workflow_id:
        repo, _, number = workflow_id.removeprefix("tamma:").rpartition("#")
        out["repo"] = repo
        if number.isdigit():
            out["issue"] = int(number)
    return out


def current_context() -> dict[str, Any]:
    """The context of the code running now, for a log line."""
    ctx: dict[str, Any] = dict(_bound.get() or {})
    activity = sys.modules.get("temporalio.activity")
    if activity is not None and activity.in_activity():
        info = activity.info()
        ctx.update(_task_fields(info.workflow_id or ""))
        ctx.update(activity=info.activity_type, attempt=info.attempt)
    trace = sys.modules.get("opentelemetry.trace")  # only when tracing was set up
    if trace is not None:
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            ctx.update(trace_id=f"{span.trace_id:032x}", span_id=f"{span.span_id:016x}")
    return ctx


def _install_record_factory() -> None:
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.tamma_ctx = current_context()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    ctx: dict[str, Any] = dict(getattr(record, "tamma_ctx", None) or {})
    wf = getattr(record, "temporal_workflow", None)  # extra that workflow.logger adds
    if isinstance(wf, dict) and wf.get("workflow_id"):
        ctx.update(_task_fields(str(wf["workflow_id"])))
        if wf.get("attempt"):
            ctx.setdefault("workflow_task_attempt", wf["attempt"])
    act = getattr(record, "temporal_activity", None)  # extra that activity.logger adds
    if isinstance(act, dict) and act.get("workflow_id"):
        ctx.update(_task_fields(str(act["workflow_id"])))
        ctx.update(activity=act.get("activity_type"), attempt=act.get("attempt"))
    return ctx


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context, structured `fields`, exc."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACT

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        doc: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(context_of(record))
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return self.redactor(json.dumps(doc, default=str, ensure_ascii=False))


class HumanFormatter(logging.Formatter):
    """For a person at a terminal: time, level, logger, message, then the context as key=value."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self.redactor = redactor or REDACT

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {**context_of(record), **(getattr(record, "fields", None) or {})}
        if extra:
            line += "  [" + " ".join(f"{k}={v}" for k, v in extra.items()) + "]"
        return self.redactor(line)


def formatter(fmt: Format, stream: IO[str] | None) -> logging.Formatter:
    """JSON lines, or the human format for `human` and for `auto` on a terminal."""
    _install_record_factory()
    tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    if fmt == "human" or (fmt == "auto" and tty):
        return HumanFormatter()
    return JsonFormatter()


def configure(
    level: str = "info",
    fmt: Format = "auto",
    secrets: Sequence[str] = (),
    stream: IO[str] | None = None,
    handler: logging.Handler | None = None,
) -> logging.Handler:
    """Route every logger to one handler (stderr unless given) with the chosen format; returns it."""
    add_secrets(secrets)
    stream = stream if stream is not None else sys.stderr
    if handler is None:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, stream))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_tamma", False)]:
        root.removeHandler(old)
    handler._tamma = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("tamma").setLevel(level.upper())  # the server sets it too (uvicorn's config)
    return handler
