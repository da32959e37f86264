"""The auto-approval policy: pure functions, safe to call from workflow code."""

from __future__ import annotations

from fnmatch import fnmatch

from tamma.models import LEVEL_ORDER, Analysis, ApprovalPolicy, Plan


def blocking_reasons(policy: ApprovalPolicy, analysis: Analysis, plan: Plan) -> list[str]:
    """Why this plan needs a person; an empty list means it may be approved automatically."""
    reasons: list[str] = []
    if not policy.auto_approve:
        reasons.append("auto-approval is off")
    if LEVEL_ORDER[analysis.complexity] > LEVEL_ORDER[policy.max_complexity]:
        reasons.append(f"complexity {analysis.complexity} > {policy.max_complexity}")
    if LEVEL_ORDER[analysis.risk] > LEVEL_ORDER[policy.max_risk]:
        reasons.append(f"risk {analysis.risk} > {policy.max_risk}")
    if plan.estimate_hours > policy.max_estimate_hours:
        reasons.append(f"estimate {plan.estimate_hours}h > {policy.max_estimate_hours}h")
    for path in plan.files:
        hit = next((p for p in policy.blocked_paths if _matches(path, p)), None)
        if hit:
            reasons.append(f"{path} matches blocked pattern {hit}")
    return reasons


def blocked_files(policy: ApprovalPolicy, files: list[str]) -> list[str]:
    """The files among `files` (what a branch really changes) that match a blocked pattern."""
    return [f for f in files if any(_matches(f, p) for p in policy.blocked_paths)]


def _matches(path: str, pattern: str) -> bool:
    # fnmatch's '*' already crosses '/', so '**/' also has to match "no directory at all".
    if fnmatch(path, pattern):
        return True
    return pattern.startswith("**/") and fnmatch(path, pattern[3:])
