"""The bounded tool-use loop that turns a plan into edits in a workspace.

It keeps its work through a flaky model (a 502, a timeout, a dropped connection is retried
in place with backoff; the conversation and the edits stay), and it notices when the model is
stuck (the same call again and again, an edit undone by the next) — first telling the model,
then stopping with the reason instead of spending the budget on a loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel

from tamma.agent.condense import ContextPolicy, condense, estimate, fold, prompt_tokens
from tamma.agent.tools import Toolbox
from tamma.errors import BudgetExceeded, ProviderError
from tamma.models import Budget, Usage
from tamma.providers.base import ChatResponse, LLMProvider, Message, ToolCall, ToolResult, ToolSpec

#: waits before each in-place retry of a model call that failed transiently (5xx, timeout, reset)
TRANSIENT_WAITS = (2.0, 5.0, 10.0, 20.0)
#: the same call (tool and arguments) this many times in a row: the model is told; twice that: stopped
REPEATS_NUDGE = 3


class AgentOutcome(BaseModel):
    summary: str
    turns: int


def check_budget(budget: Budget, spent: Usage, started: float) -> None:
    """Raise BudgetExceeded naming the first budget that `spent` has used up (Budget.ran_out)."""
    ran_out = budget.ran_out(spent, time.monotonic() - started)
    if ran_out:
        raise BudgetExceeded(ran_out, spent=spent.model_dump())


def _problem(response: ChatResponse) -> str:
    if response.stop_reason == "refusal":
        return "You declined to continue. If the task is acceptable, continue with the tools; otherwise explain why."
    if response.stop_reason == "max_tokens":
        return "Your reply was cut off at the output limit. Continue in smaller steps."
    if not response.text.strip() and not response.tool_calls:
        return "Your reply was empty. Continue with a tool call, or finish with a summary."
    return ""


async def _chat(
    provider: LLMProvider,
    system: str,
    messages: list[Message],
    specs: Sequence[ToolSpec],
    on_turn: Callable[[int, str], None],
    turn: int,
) -> ChatResponse:
    """One model call; a transient failure (not a rate limit: the workflow waits those out) is
    retried here, so the conversation and the edits made so far are kept. A prompt over the
    model's window is condensed (all but the last exchange) and asked again, while that helps."""
    waits = iter((*TRANSIENT_WAITS, None))
    while True:
        try:
            return await provider.chat("code", system, messages, list(specs))
        except ProviderError as exc:
            if exc.context_overflow:
                saved = condense(messages, keep_recent=2)
                if saved:
                    on_turn(turn, f"the prompt was over the model's window: elided {saved} characters of old output")
                    continue
                folded = fold(messages, keep_recent=2)
                if not folded:
                    raise
                on_turn(turn, f"the prompt was over the model's window: folded old turns ({folded} characters)")
                continue
            wait = next(waits)
            if wait is None or not exc.retryable or exc.rate_limited:
                raise
            pause = min(exc.retry_after_s or wait, 60.0)
            on_turn(turn, f"model call failed ({exc.message[:120]}); retrying in {pause:g}s")
            await asyncio.sleep(pause)


class _Stuck:
    """The same tool call repeated, or an edit that undoes the one before it."""

    def __init__(self) -> None:
        self.last = ""
        self.repeats = 0
        self.edits: list[tuple[str, str, str]] = []  # (path, old, new)
        self.flips = 0

    def see(self, calls: list[ToolCall]) -> str:
        """A note for the model when it looks stuck ("" otherwise); raises when it stays stuck."""
        for call in calls:
            key = f"{call.name} {json.dumps(call.input, sort_keys=True)}"
            self.repeats = self.repeats + 1 if key == self.last else 1
            self.last = key
            if call.name == "edit_file":
                path, old, new = (str(call.input.get(k, "")) for k in ("path", "old_text", "new_text"))
                if any(p == path and o == new and n == old for p, o, n in self.edits[-3:]):
                    self.flips += 1
                self.edits.append((path, old, new))
        if self.repeats >= 2 * REPEATS_NUDGE or self.flips >= 2:
            what = f"{self.repeats} identical calls in a row" if self.repeats >= 2 * REPEATS_NUDGE else "edits undone"
            raise ProviderError(
                f"the coding agent was stuck ({what}: {self.last[:200]}); stopped instead of spending the budget",
                retryable=False,
            )
        if self.repeats >= REPEATS_NUDGE:
            return (
                f"You have made the same call {self.repeats} times in a row with the same result. It will not "
                "change: try another approach (read other files, search, run a smaller command) or finish."
            )
        if self.flips == 1 and calls and calls[-1].name == "edit_file":
            return "Your last edit undid the one before it. Decide which version is right before editing again."
        return ""


async def run_agent(
    provider: LLMProvider,
    toolbox: Toolbox,
    system: str,
    task: str,
    max_turns: int,
    on_turn: Callable[[int, str], None],
    budget: Budget | None = None,
    output_retries: int = 2,
    already: Usage | None = None,
    context: ContextPolicy | None = None,
    checkpoint: Callable[[int, str], Awaitable[None]] | None = None,
) -> AgentOutcome:
    """Converse until the model finishes; bad output is fed back at most `output_retries` times
    in a row; budgets and max_turns stop it with a clear error. `already` is what earlier
    attempts of this step spent: a retried step does not get a fresh budget. `context`: when
    a prompt passes its share of the window, old tool outputs are elided (agent.condense).
    `checkpoint(turn, last words)` runs after every turn whose tools ran (agent.checkpoint)."""
    context = context or ContextPolicy()
    earlier = already or Usage()
    budget = budget or Budget()
    started = time.monotonic()
    messages = [Message(role="user", text=task)]
    problems = 0
    stuck = _Stuck()
    counted, counted_upto = 0, 0  # the last request's prompt as the provider counted it, and its length
    for turn in range(1, max_turns + 1):
        # Condense *before* a request that would pass the threshold (the last count plus an
        # estimate of what was added since), so no request is sent over it.
        if counted and counted + estimate("", messages[counted_upto:]) > context.threshold:
            saved = condense(messages, context.keep_recent)
            if saved:
                on_turn(turn, f"condensed the conversation: elided {saved} characters of old tool output")
            else:  # nothing left to elide and still over (as the provider counted): the turns fill it
                folded = fold(messages, context.keep_recent)
                if folded:
                    on_turn(turn, f"condensed the conversation: folded old turns into a digest ({folded} characters)")
                    counted, counted_upto = estimate(system, messages), len(messages)
        response = await _chat(provider, system, messages, toolbox.specs, on_turn, turn)
        counted, counted_upto = prompt_tokens(response, system, messages), len(messages)
        messages.append(Message(role="assistant", text=response.text, tool_calls=response.tool_calls))
        spent = earlier.plus(provider.usage.model_copy(update={"agent_turns": turn}))
        check_budget(budget, spent, started)
        problem = _problem(response)
        if problem:
            problems += 1
            if problems > output_retries:
                raise ProviderError(
                    f"the coding model kept giving unusable replies ({response.stop_reason}: {problem})",
                    retryable=False,
                )
            skipped = [
                ToolResult(tool_call_id=c.id, content="not run: the reply was cut off", is_error=True)
                for c in response.tool_calls
            ]
            messages.append(Message(role="user", text=problem, tool_results=skipped))
            on_turn(turn, f"re-asked: {response.stop_reason}")
            continue
        problems = 0
        if not response.tool_calls:
            on_turn(turn, "finished")
            return AgentOutcome(summary=response.text.strip(), turns=turn)
        nudge = stuck.see(response.tool_calls)
        results = [await toolbox.call(call) for call in response.tool_calls]
        on_turn(turn, ", ".join(c.name for c in response.tool_calls))
        messages.append(Message(role="user", text=nudge, tool_results=results))
        if checkpoint is not None:
            await checkpoint(turn, response.text)
    raise ProviderError(
        f"the coding agent used all {max_turns} turns without finishing; raise agent.max_turns or split the issue",
        retryable=False,
    )
