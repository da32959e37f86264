"""Issue 21's context goals, held by the context bench's own measurement (token counts are
deterministic: nothing here is timed), and the stand-in's prompt-cache model the bench counts with."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.standins.anthropic_api import PromptCache

BENCH = Path(__file__).resolve().parents[2] / "bench" / "agent_context.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agent_context_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_a_long_session_stays_under_its_window_costs_less_and_keeps_its_cache() -> None:
    bench = _bench()
    window = 64_000
    runs = await bench.measure(44, window)
    on, off = runs["condensed"], runs["not condensed"]
    assert on["turns"] == off["turns"] == 45  # the same trajectory, to its end, both ways
    assert off["peak"] > window  # without condensing it would not fit at all
    assert on["condensed"] >= 1
    assert on["peak"] <= 0.6 * window  # no request is sent over the threshold
    assert on["total"] <= 0.5 * off["total"]
    assert on["cached"] >= 0.7


def _body(*texts: str, breakpoint_last: bool = True) -> dict[str, object]:
    messages = []
    for i, t in enumerate(texts):
        block: dict[str, object] = {"type": "text", "text": t}
        if breakpoint_last and i == len(texts) - 1:
            block["cache_control"] = {"type": "ephemeral"}
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": [block]})
    return {"system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}], "messages": messages}


def test_the_prompt_cache_model_reads_a_prefix_seen_before_and_nothing_after_a_change() -> None:
    cache = PromptCache(minimum=100)
    long = "x" * 2000  # 500 tokens
    first = cache.usage(_body(long, long))
    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] > 1000
    # the next turn: the earlier prefix is read from the cache, only the new turn is written
    second = cache.usage(_body(long, long, long))
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert 500 <= second["cache_creation_input_tokens"] <= 520
    # an early block changed (as condensing does): nothing after it can be read
    changed = cache.usage(_body("y" * 2000, long, long))
    assert changed["cache_read_input_tokens"] < 10  # the system prompt is under the minimum: not cached
    # without breakpoints nothing is cached or read
    plain = PromptCache(minimum=100)
    body = _body(long, long, breakpoint_last=False)
    body["system"] = "sys"
    assert plain.usage(body)["cache_read_input_tokens"] == 0 and plain.usage(body)["cache_read_input_tokens"] == 0
