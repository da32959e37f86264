"""The auto-approval policy."""

from __future__ import annotations

from tamma.models import Analysis, ApprovalPolicy, Plan, PlanStep
from tamma.policy import blocking_reasons


def plan(files: list[str], hours: float = 0.5) -> Plan:
    return Plan(summary="s", steps=[PlanStep(title="x")], files=files, estimate_hours=hours)


LOW = Analysis(summary="s", complexity="low", risk="low")


def test_low_risk_small_plan_is_auto_approved() -> None:
    assert blocking_reasons(ApprovalPolicy(), LOW, plan(["src/a.py"])) == []


def test_each_limit_blocks_with_its_reason() -> None:
    high = Analysis(summary="s", complexity="high", risk="medium")
    reasons = blocking_reasons(ApprovalPolicy(), high, plan([".github/workflows/ci.yml", "certs/x.pem"], hours=5))
    assert reasons == [
        "complexity high > low",
        "risk medium > low",
        "estimate 5.0h > 2.0h",
        ".github/workflows/ci.yml matches blocked pattern .github/**",
        "certs/x.pem matches blocked pattern **/*.pem",
    ]


def test_double_star_matches_top_level_files_too() -> None:
    assert blocking_reasons(ApprovalPolicy(), LOW, plan([".env"])) == [".env matches blocked pattern **/.env*"]


def test_policy_off_always_asks() -> None:
    assert blocking_reasons(ApprovalPolicy(auto_approve=False), LOW, plan([])) == ["auto-approval is off"]


def test_only_trusted_people_steer_the_agent_through_reviews() -> None:
    from tamma.models import ReviewComment
    from tamma.policy import untrusted_reason

    gh = ["OWNER", "MEMBER", "COLLABORATOR"]
    gl = ["DEVELOPER", "MAINTAINER", "OWNER"]

    def why(association: str, platform: str = "github", author: str = "x", users: list[str] | None = None) -> str:
        c = ReviewComment(id=1, author=author, body="do it", association=association)
        return untrusted_reason(c, platform, gh, gl, users or [])

    for ok in ("OWNER", "MEMBER", "COLLABORATOR", "member"):
        assert why(ok) == ""
    for stranger in ("NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "MANNEQUIN", ""):
        assert "not trusted" in why(stranger), stranger
    assert why("DEVELOPER", "github") != ""  # a GitLab role name means nothing on GitHub
    assert why("DEVELOPER", "gitlab") == "" and why("REPORTER", "gitlab") != "" and why("NONE", "gitlab") != ""
    assert why("NONE", author="Alice", users=["alice"]) == ""  # the explicit allowlist
    assert why("NONE", "local") == ""  # local reviews come from the people at this machine
    assert "mallory (NONE)" in why("NONE", author="mallory")
