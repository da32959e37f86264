"""The auto-approval policy: pure functions, safe to call from workflow code."""

from __future__ import annotations

from fnmatch import fnmatch

from tamma.models import LEVEL_ORDER, Analysis, ApprovalPolicy, Plan, ReviewComment


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


def untrusted_reason(
    comment: ReviewComment, platform: str, associations: list[str], gitlab_roles: list[str], users: list[str]
) -> str:
    """Why a piece of review feedback must not steer the agent ("" when it may): only people the
    policy trusts — an allowlisted user, or by their standing on the forge — are acted on."""
    if comment.author.lower() in {u.lower() for u in users}:
        return ""
    if platform == "local":
        return ""  # written by the people at this machine, through the CLI or the API
    allowed = gitlab_roles if platform == "gitlab" else associations
    standing = comment.association or "NONE"
    if standing.upper() in {a.upper() for a in allowed}:
        return ""
    return f"{comment.author} ({standing}) is not trusted to steer Tamma (allowed: {', '.join(allowed) or 'nobody'})"
