"""Missed webhooks are caught: a Temporal Schedule per configured repository runs this workflow
every `polling.interval_s`. It lists the open issues that are Tamma's (assigned to the bot or
labelled for it, the webhooks' own rules) and starts a task for each one that has none — under
the same workflow id a webhook uses, so a poll and a delivery can never make two."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from tamma import activity_names as names
    from tamma.models import IssueTaskInput, PollInput, PollResult
    from tamma.workflows import search
    from tamma.workflows.issue import IssueWorkflow


@workflow.defn(name="PollWorkflow")
class PollWorkflow:
    @workflow.run
    async def run(self, inp: PollInput) -> PollResult:
        candidates: list[int] = await workflow.execute_activity(
            names.POLL_CANDIDATES,
            inp,
            result_type=list[int],
            start_to_close_timeout=timedelta(seconds=120),
            heartbeat_timeout=timedelta(seconds=inp.options.heartbeat_timeout_s),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)),
        )
        started: list[int] = []
        for number in candidates:
            task = IssueTaskInput(repo=inp.repo, issue_number=number, options=inp.options)
            try:
                await workflow.start_child_workflow(
                    IssueWorkflow.run,
                    task,
                    id=search.workflow_id(inp.repo.key, number),
                    task_queue=workflow.info().task_queue,
                    # As a webhook: a task that exists, running or finished, is not started again
                    # (a finished one only by `/tamma retry` or `tamma retry`).
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    # The task outlives this poll: it is the issue's, not the schedule's.
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    search_attributes=search.new_task(inp.repo.key, number),
                    static_summary=search.summary(inp.repo.key, number),
                )
            except WorkflowAlreadyStartedError:
                continue
            started.append(number)
        return PollResult(candidates=candidates, started=started)
