"""A refresh-token session: the state that rotation with reuse detection needs, kept where every
API replica can reach it (the API servers are stateless; Temporal is the one thing they share).

One workflow per session (`tamma-session-<sid>`), run by the API servers' own small worker on
the `<task_queue>-sessions` queue. It holds only the session's current generation, its deadlines
and whether it was revoked — never a token. `rotate(gen)` is the one way forward: the refresh
token of the current generation moves the session to the next; any older one (a token that was
already used: copied, stolen, or replayed) revokes the whole session, the thief's tokens and the
owner's alike, which is what tells the owner something is wrong (RFC 9700 §4.14.2). Updates to
one workflow are applied one at a time, so two refreshes racing with the same token cannot both
win. A revoked session refuses every refresh; the workflow completes when no refresh came
within the idle lifetime (or at the absolute end), when every token it issued has expired."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError

#: the failure types the API maps to answers (tamma.runtime.sessions)
REUSED = "SessionTokenReused"
REVOKED = "SessionRevoked"
ENDED = "SessionEnded"
#: the memo key a revoked session carries, so the API refuses its access tokens by describing the
#: workflow (a server-side read: no worker needs to be up, unlike a query)
REVOKED_MEMO = "revoked"


class SessionState(BaseModel):
    sid: str
    subject: str
    role: str
    generation: int = 0
    idle_s: int  # a refresh must come within this (the refresh token's lifetime)
    ends_at: datetime  # the absolute end, whatever the refreshes
    last_refresh: datetime
    revoked: str = ""  # why, once revoked
    rotations_this_run: int = 0
    #: a long-lived session rotates hourly for weeks: it starts afresh (continue-as-new) after
    #: this many, so its history stays small
    rotations_per_run: int = 500


class Rotated(BaseModel):
    generation: int
    subject: str
    role: str
    ends_at: datetime


@workflow.defn(name="SessionWorkflow")
class SessionWorkflow:
    @workflow.init
    def __init__(self, state: SessionState) -> None:
        self.state = state.model_copy()
        self.state.rotations_this_run = 0
        self._seen = state.generation

    def _rotated(self) -> bool:
        return self.state.generation != self._seen

    def _idle_deadline(self) -> datetime:
        return min(self.state.ends_at, self.state.last_refresh + timedelta(seconds=self.state.idle_s))

    @workflow.run
    async def run(self, state: SessionState) -> str:
        # Open until the idle deadline even once revoked: every refresh token of the session
        # expires by then (its exp is that deadline), and until then a late one is told why.
        while (left := (self._idle_deadline() - workflow.now()).total_seconds()) > 0:
            self._seen = self.state.generation
            try:
                await workflow.wait_condition(self._rotated, timeout=timedelta(seconds=left))
            except TimeoutError:
                continue  # the deadline is looked at again
            if self.state.rotations_this_run >= self.state.rotations_per_run and not self.state.revoked:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.state)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state.revoked or "expired"

    def _refuse_if_ended(self) -> None:
        if self.state.revoked:
            raise ApplicationError(f"the session was revoked ({self.state.revoked})", type=REVOKED, non_retryable=True)
        if workflow.now() >= self._idle_deadline():
            raise ApplicationError("the session has expired", type=ENDED, non_retryable=True)

    @workflow.update
    def rotate(self, generation: int) -> Rotated:
        self._refuse_if_ended()
        if generation != self.state.generation:
            # An old refresh token came back: someone else holds a copy. End the session for all.
            self._revoke(f"refresh token of generation {generation} used again")
            raise ApplicationError(
                "this refresh token was already used; the session is revoked", type=REUSED, non_retryable=True
            )
        self.state.generation += 1
        self.state.last_refresh = workflow.now()
        self.state.rotations_this_run += 1
        s = self.state
        return Rotated(generation=s.generation, subject=s.subject, role=s.role, ends_at=s.ends_at)

    def _revoke(self, reason: str) -> None:
        self.state.revoked = reason[:200] or "revoked"
        if workflow.patched("session-revoked-memo"):  # histories from before it replay without it
            workflow.upsert_memo({REVOKED_MEMO: self.state.revoked})

    @workflow.update
    def revoke(self, reason: str) -> None:
        if not self.state.revoked:
            self._revoke(reason)

    @workflow.query
    def describe(self) -> SessionState:
        return self.state
