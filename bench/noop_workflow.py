"""The baseline for bench/issue_overhead.py: a workflow of N no-op activities."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="NoopChain")
class NoopChain:
    @workflow.run
    async def run(self, steps: int) -> int:
        for step in range(steps):
            await workflow.execute_activity("noop", step, start_to_close_timeout=timedelta(seconds=30))
        return steps
