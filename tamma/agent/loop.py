"""The bounded tool-use loop that turns a plan into edits in a workspace."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel

from tamma.agent.tools import Toolbox
from tamma.errors import BudgetExceeded, ProviderError
from tamma.models import Budget, Usage
from tamma.providers.base import ChatResponse, LLMProvider, Message, ToolResult


class AgentOutcome(BaseModel):
    summary: str
    turns: int


def check_budget(budget: Budget, spent: Usage, started: float) -> None:
    """Raise BudgetExceeded naming the first budget that `spent` has used up."""
    checks = [
        ("tokens", budget.max_tokens, spent.tokens),
        ("cost (USD)", budget.max_cost_usd, spent.cost_usd),
        ("agent turns", budget.max_agent_turns, spent.agent_turns),
        ("wall time (s)", budget.max_wall_s, time.monotonic() - started),
    ]
    for name, limit, value in checks:
        if limit is not None and value >= limit:
            raise BudgetExceeded(f"the {name} budget ran out: {value:g} of {limit:g}", spent=spent.model_dump())


def _problem(response: ChatResponse) -> str:
    if response.stop_reason == "refusal":
        return "You declined to continue. If the task is acceptable, continue with the tools; otherwise explain why."
    if response.stop_reason == "max_tokens":
        return "Your reply was cut off at the output limit. Continue in smaller steps."
    if not response.text.strip() and not response.tool_calls:
        return "Your reply was empty. Continue with a tool call, or finish with a summary."
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
) -> AgentOutcome:
    """Converse until the model finishes; bad output is fed back at most `output_retries` times
    in a row; budgets and max_turns stop it with a clear error."""
    budget = budget or Budget()
    started = time.monotonic()
    messages = [Message(role="user", text=task)]
    problems = 0
    for turn in range(1, max_turns + 1):
        response = await provider.chat("code", system, messages, toolbox.specs)
        messages.append(Message(role="assistant", text=response.text, tool_calls=response.tool_calls))
        check_budget(budget, provider.usage.model_copy(update={"agent_turns": turn}), started)
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
        results = [await toolbox.call(call) for call in response.tool_calls]
        on_turn(turn, ", ".join(c.name for c in response.tool_calls))
        messages.append(Message(role="user", tool_results=results))
    raise ProviderError(
        f"the coding agent used all {max_turns} turns without finishing; raise agent.max_turns or split the issue",
        retryable=False,
    )
