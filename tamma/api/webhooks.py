"""POST /webhooks/github and /webhooks/gitlab.

Order of work, cheapest refusal first: size cap, signature/token (constant time, over the raw
bytes), content type and JSON, then what the event means. An accepted event is durable in
Temporal (workflow started or signalled) before the 2xx goes back; if Temporal cannot be
reached the answer is 503 so the forge shows the failure and the delivery can be redelivered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tamma.api.errors import error_response
from tamma.api.events import GITHUB_EVENTS, GITLAB_EVENTS, Action, github_action, gitlab_action
from tamma.api.metrics import Metrics
from tamma.config import Settings, WebhookSettings
from tamma.errors import InvalidInputError, NotFoundError, TammaError, TemporalUnavailable
from tamma.logs import bound, bound_task
from tamma.models import ApprovalRequest, EventNote, IssueTaskInput
from tamma.runtime.tasks import TaskService
from tamma.workflows import search

router = APIRouter(tags=["webhooks"])
Reply = tuple[int, dict[str, Any]]


class WebhookError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


def github_signature_ok(body: bytes, header: str | None, secrets: list[str]) -> bool:
    """X-Hub-Signature-256: sha256=HMAC(secret, raw body); any configured secret may match."""
    if not header or not header.startswith("sha256="):
        return False
    given = header[7:].strip().lower()
    ok = False
    for secret in secrets:  # no early exit: every secret costs the same time
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        # bytes, not str: compare_digest refuses a non-ASCII str (a header is latin-1 text).
        ok |= hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))
    return ok


def gitlab_token_ok(header: str | None, tokens: list[str]) -> bool:
    if not header:
        return False
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(token.encode(), header.encode())
    return ok


@dataclass(frozen=True)
class Forge:
    """How one forge authenticates and names its deliveries."""

    title: str
    secrets_setting: str
    auth_header: str
    auth_header_title: str
    event_header: str
    event_header_title: str
    delivery_header: str
    authentic: Callable[[bytes, str | None, list[str]], bool]
    interpret: Callable[[str, dict[str, Any], WebhookSettings], Action]


_FORGES = {
    "github": Forge(
        "GitHub",
        "github_secrets",
        "x-hub-signature-256",
        "X-Hub-Signature-256",
        "x-github-event",
        "X-GitHub-Event",
        "x-github-delivery",
        github_signature_ok,
        github_action,
    ),
    "gitlab": Forge(
        "GitLab",
        "gitlab_tokens",
        "x-gitlab-token",
        "X-Gitlab-Token",
        "x-gitlab-event",
        "X-Gitlab-Event",
        "x-gitlab-event-uuid",
        lambda _body, header, tokens: gitlab_token_ok(header, tokens),
        gitlab_action,
    ),
}


class Deliveries:
    """Delivery ids seen recently: a redelivery gets the first answer and changes nothing.
    Concurrent duplicates wait for the first one instead of racing it."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._done: OrderedDict[str, Reply] = OrderedDict()
        self._running: dict[str, asyncio.Future[Reply]] = {}

    async def once(self, key: str, work: Any) -> tuple[Reply, bool]:
        if key in self._done:
            return self._done[key], True
        if key in self._running:
            return await asyncio.shield(self._running[key]), True
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            reply: Reply = await work()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._running.pop(key, None)
        future.set_result(reply)
        if reply[0] < 500:
            self._done[key] = reply
            if len(self._done) > self.size:
                self._done.popitem(last=False)
        return reply, False


class WebhookHub:
    def __init__(self, settings: Settings, client: Client, metrics: Metrics) -> None:
        self.settings = settings
        self.cfg = settings.webhooks
        self.tasks = TaskService(client, settings.temporal.task_queue)
        self.client = client
        self.metrics = metrics
        self.deliveries = Deliveries()

    async def read_body(self, request: Request) -> bytes:
        cap = self.cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise WebhookError(413, f"body of {declared} bytes exceeds webhooks.max_body_bytes ({cap})")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise WebhookError(413, f"body exceeds webhooks.max_body_bytes ({cap})")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def parse(body: bytes, content_type: str) -> dict[str, Any]:
        kind = content_type.split(";")[0].strip().lower()
        try:
            if kind == "application/json":
                data = json.loads(body)
            elif kind == "application/x-www-form-urlencoded":
                form = parse_qs(body.decode("utf-8"), strict_parsing=True)
                data = json.loads(form["payload"][0])
            else:
                raise WebhookError(
                    415,
                    f"content type {kind or 'missing'} is not application/json or application/x-www-form-urlencoded",
                )
        except RecursionError:
            raise WebhookError(400, "malformed body: JSON nested too deeply") from None
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            raise WebhookError(400, f"malformed body: {str(exc)[:200]}") from None
        if not isinstance(data, dict):
            raise WebhookError(400, "malformed body: the payload is not a JSON object")
        return data

    async def receive(self, platform: str, request: Request) -> Reply:
        """Authenticate, parse and act on one delivery from `platform` ("github" or "gitlab")."""
        forge = _FORGES[platform]
        secrets = [s.get_secret_value() for s in getattr(self.cfg, forge.secrets_setting)]
        if not secrets:
            raise WebhookError(
                503, f"{forge.title} webhooks are off: set webhooks.{forge.secrets_setting} (fail closed)"
            )
        body = await self.read_body(request)
        if not forge.authentic(body, request.headers.get(forge.auth_header), secrets):
            self.metrics.signature_failures.labels(platform).inc()
            raise WebhookError(401, f"missing or invalid {forge.auth_header_title}")
        event = request.headers.get(forge.event_header)
        if not event:
            raise WebhookError(400, f"missing {forge.event_header_title} header")
        payload = self.parse(body, request.headers.get("content-type", ""))
        delivery = request.headers.get(forge.delivery_header, "")[:100]
        with bound(delivery=delivery, event=event_label(platform, event)):
            return await self._handle(platform, event, delivery, lambda: forge.interpret(event, payload, self.cfg))

    async def _handle(self, platform: str, event: str, delivery: str, interpret: Any) -> Reply:
        async def work() -> Reply:
            try:
                action: Action = interpret()
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                # Signed, valid JSON, but not shaped like the event it claims to be.
                what = f"{event[:64]} payload has an unexpected shape: {exc!r}"
                return 400, {"outcome": "rejected", "reason": what[:300]}
            return await self.apply(action, f"{platform}:{delivery}" if delivery else "")

        if delivery:
            reply, duplicate = await self.deliveries.once(f"{platform}:{delivery}", work)
            if duplicate:
                reply = (reply[0], {**reply[1], "duplicate": True})
        else:
            reply = await work()
        outcome = "duplicate" if reply[1].get("duplicate") else reply[1]["outcome"]
        self.metrics.deliveries.labels(platform, event_label(platform, event), outcome).inc()
        return reply

    async def _retry(self, action: Action, wid: str, delivery: str) -> Reply:
        """`/tamma retry`: TaskService.plan_retry decides, as for `tamma retry` and the API's
        retry — a parked task resumes, a merged or still-working one is refused (the answer
        says why), any other finished one runs again as it was started."""
        try:
            plan = await _within(self.tasks.plan_retry(wid, self.settings.task_options()))
        except (NotFoundError, InvalidInputError) as exc:
            self.metrics.workflows.labels("retry_refused").inc()
            return 200, {"outcome": "refused", "task": wid, "reason": exc.message}
        if plan.action == "resume":
            # a signal, not an update: kept in history and taken when a worker is there; its
            # delivery id makes a redelivered comment count once
            resume = ApprovalRequest(by=action.by, reason=action.reason, delivery=delivery)
            await _within(
                self.client.get_workflow_handle(wid).signal(
                    "resume_signal", resume, rpc_timeout=timedelta(seconds=RPC_S)
                )
            )
            outcome = "resume_requested"
        else:
            assert plan.input is not None
            started = await _within(self.tasks.ensure_started(plan.input, rerun=True, rpc_timeout_s=RPC_S))
            outcome = "started" if started else "attached"
        self.metrics.workflows.labels(outcome).inc()
        return 200, {"outcome": outcome, "task": wid, "reason": action.reason}

    async def apply(self, action: Action, delivery: str) -> Reply:
        if action.kind == "pong":
            return 200, {"outcome": "pong"}
        if action.kind == "ignore" or action.repo is None or action.issue is None:
            return 202, {"outcome": "ignored", "reason": action.reason}
        wid = search.workflow_id(action.repo.key, action.issue)
        with bound_task(wid):  # what is logged while acting on the task names it
            try:
                if action.kind == "start" and action.rerun:
                    return await self._retry(action, wid, delivery)
                if action.kind == "start":
                    inp = IssueTaskInput(
                        repo=action.repo, issue_number=action.issue, options=self.settings.task_options()
                    )
                    asked = datetime.now(UTC)
                    try:
                        started = await _within(self.tasks.ensure_started(inp, rpc_timeout_s=RPC_S))
                    except TemporalUnavailable:
                        # The start may have taken effect though its answer was lost (a slow
                        # server under a flood): look before answering 503, so that "started"
                        # is said when it started and a redelivery is not asked for in vain.
                        found = await self._began_since(wid, asked)
                        if found is None:
                            raise
                        started = found
                    outcome = "started" if started else "attached"  # "started" only when a run began
                    reason = action.reason
                    if not started and (ended := await self._ended_as(wid)):
                        # a finished task is not run again by a repeated trigger (a redelivery, a
                        # re-assignment): say so, and how to ask for it, instead of "attached"
                        outcome = "finished"
                        reason = f"the task already ended ({ended}); comment `/tamma retry` to run it again"
                    self.metrics.workflows.labels(outcome).inc()
                    return 200, {"outcome": outcome, "task": wid, "reason": reason}
                handle = self.client.get_workflow_handle(wid)
                rpc = timedelta(seconds=RPC_S)
                if action.kind == "cancel" or action.signal in ("approve_signal", "reject_signal"):
                    # the same checks and answers as `tamma approve|reject|cancel` and the API
                    try:
                        if action.kind == "cancel":
                            await _within(self.tasks.cancel(wid))
                            return 200, {"outcome": "cancelled", "task": wid, "reason": action.reason}
                        await _within(
                            self.tasks.check_decision(wid, "approve" if action.signal == "approve_signal" else "reject")
                        )
                    except (NotFoundError, InvalidInputError) as exc:
                        return 200, {"outcome": "refused", "task": wid, "reason": exc.message}
                arg: Any = (
                    ApprovalRequest(by=action.by, reason=action.text, delivery=delivery)
                    if action.signal in ("approve_signal", "reject_signal")
                    else EventNote(kind=action.text, delivery=delivery, detail=action.reason)
                )
                await _within(handle.signal(action.signal or "", arg, rpc_timeout=rpc))
                self.metrics.workflows.labels("signalled").inc()
                return 200, {"outcome": "signalled", "task": wid, "signal": action.signal, "reason": action.reason}
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return 202, {"outcome": "ignored", "reason": f"no running task for {wid}"}
                raise TemporalUnavailable(f"Temporal refused the {action.kind}: {exc.message}") from None
            except RuntimeError as exc:  # the lazy client could not connect
                raise TemporalUnavailable(f"Temporal is unreachable: {str(exc)[:200]}") from None

    async def _ended_as(self, wid: str) -> str:
        """The final status of `wid` when its last run has ended ("" while it runs or when
        Temporal does not say)."""
        try:
            desc = await asyncio.wait_for(
                self.client.get_workflow_handle(wid).describe(rpc_timeout=timedelta(seconds=CHECK_S)), CHECK_S + 0.5
            )
        except (TimeoutError, RPCError, RuntimeError):
            return ""
        if desc.status == WorkflowExecutionStatus.RUNNING:
            return ""
        status = desc.typed_search_attributes.get(search.STATUS)
        return str(status or (desc.status.name.lower() if desc.status else "ended"))

    async def _began_since(self, wid: str, asked: datetime) -> bool | None:
        """After a start whose answer was lost: True when a run of `wid` began since `asked`
        (this start, most likely), False when an older one exists (attached), None when there is
        none or Temporal does not answer this either."""
        try:
            desc = await asyncio.wait_for(
                self.client.get_workflow_handle(wid).describe(rpc_timeout=timedelta(seconds=CHECK_S)), CHECK_S + 0.5
            )
        except (TimeoutError, RPCError, RuntimeError):
            return None
        began = desc.start_time
        return began is not None and began >= asked - timedelta(seconds=0.5)  # clocks of one site


#: GitHub gives up on a delivery after 10 s: with Temporal down, answer 503 well before that (the
#: SDK retries an RPC on its own inside its timeout, so the whole call is bounded here too). A
#: start that timed out is then looked up (CHECK_S) before the answer: at most ~6.5 s in all.
DEADLINE_S = 4.0
RPC_S = 3.5
CHECK_S = 2.0
T = TypeVar("T")


async def _within(call: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(call, timeout=DEADLINE_S)
    except TimeoutError:
        raise TemporalUnavailable(f"Temporal did not answer within {DEADLINE_S:g}s") from None


def event_label(platform: str, event: str) -> str:
    """A metric label for the event a sender named: known names, else "other"."""
    known = GITHUB_EVENTS if platform == "github" else GITLAB_EVENTS
    return event if event in known else "other"


PATHS = {"/webhooks/github": "github", "/webhooks/gitlab": "gitlab"}
_BEFORE_AUTH = frozenset({401, 413, 503})


async def deliver(request: Request, platform: str) -> JSONResponse:
    """One delivery, start to answer. What happened (event, delivery id, outcome, reason) goes to
    `request.state.webhook` for the access log line: one line per delivery, ignored ones included."""
    hub: WebhookHub = request.app.state.hub
    forge = _FORGES[platform]
    event = request.headers.get(forge.event_header, "unknown")
    # header values are the sender's: capped, so a forged request cannot blow up a log line
    note: dict[str, Any] = {"event": event[:64], "delivery": request.headers.get(forge.delivery_header, "")[:100]}
    request.state.webhook = note
    try:
        reply = await hub.receive(platform, request)
    except WebhookError as exc:
        # Refused before the sender proved who it is (size, signature, webhooks off): its event
        # header must not become a metric label, or forged requests could grow the registry.
        label = "unauthenticated" if exc.status in _BEFORE_AUTH else event_label(platform, event)
        hub.metrics.deliveries.labels(platform, label, f"http_{exc.status}").inc()
        note.update(outcome="refused", reason=exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    except TammaError as exc:  # Temporal unreachable: 503, so the forge redelivers
        hub.metrics.deliveries.labels(platform, event_label(platform, event), "http_503").inc()
        note.update(outcome="failed", reason=exc.message)
        return error_response(exc)
    note.update(outcome="duplicate" if reply[1].get("duplicate") else reply[1]["outcome"])
    if reply[1].get("task"):
        note["task"] = reply[1]["task"]  # the access log line names the task the delivery acted on
    if "reason" in reply[1]:
        # Reasons can quote what the sender sent: capped for the reply and the log line alike.
        reply[1]["reason"] = note["reason"] = str(reply[1]["reason"])[:300]
    return JSONResponse(reply[1], status_code=reply[0])


@router.post(
    "/webhooks/github",
    summary="GitHub webhook (X-Hub-Signature-256 over the raw body)",
    responses={202: {"description": "ignored, with the reason"}, 401: {}, 413: {}, 415: {}, 503: {}},
)
async def github_webhook(request: Request) -> JSONResponse:
    return await deliver(request, "github")


@router.post(
    "/webhooks/gitlab",
    summary="GitLab webhook (X-Gitlab-Token)",
    responses={202: {"description": "ignored, with the reason"}, 401: {}, 413: {}, 415: {}, 503: {}},
)
async def gitlab_webhook(request: Request) -> JSONResponse:
    return await deliver(request, "gitlab")
