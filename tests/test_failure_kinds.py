"""The failure kinds the workflow decides on are one shared vocabulary: an activity's error
travels as its kind whatever its class is called, and the workflow compares against the kinds,
never against a class name written as a string."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

import tamma
from tamma.activities.errors import temporal_errors
from tamma.errors import BudgetExceeded, FailureKind, MergeWaiting, TammaError
from tamma.providers.ratelimit import RateLimited

RAISERS: dict[FailureKind, TammaError] = {
    FailureKind.BUDGET_EXCEEDED: BudgetExceeded("the cost budget ran out", {"cost_usd": 1.0}),
    FailureKind.RATE_LIMITED: RateLimited("429 for 60s", 60.0),
    FailureKind.MERGE_WAITING: MergeWaiting("At least 1 approving review is required"),
}


async def _raised(exc: TammaError) -> ApplicationError:
    @temporal_errors
    async def step() -> None:
        raise exc

    with pytest.raises(ApplicationError) as caught:
        await step()
    return caught.value


def test_every_kind_has_an_error_that_raises_it() -> None:
    assert set(RAISERS) == set(FailureKind), "a new FailureKind needs an error class whose `kind` it is"


@pytest.mark.parametrize("kind", list(FailureKind))
async def test_an_error_travels_as_its_kind(kind: FailureKind) -> None:
    assert (await _raised(RAISERS[kind])).type == kind.value


async def test_a_renamed_error_class_still_travels_as_its_kind() -> None:
    renamed = type("SpendingCapReached", (BudgetExceeded,), {})
    assert (await _raised(renamed("out of money"))).type == FailureKind.BUDGET_EXCEEDED
    plain = type("SomethingElse", (TammaError,), {})
    assert (await _raised(plain("x"))).type == "SomethingElse"  # no kind: the class name, as before


def _string_type_comparisons(source: str) -> list[int]:
    """Lines comparing an `.type` attribute with a string literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "type" for s in sides) and any(
                isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides
            ):
                found.append(node.lineno)
    return found


def test_the_workflows_compare_failure_types_only_with_kinds() -> None:
    workflows = Path(tamma.__file__).parent / "workflows"
    offenders = {
        f.name: lines for f in sorted(workflows.glob("*.py")) if (lines := _string_type_comparisons(f.read_text()))
    }
    assert offenders == {}, f"compare ApplicationError.type with a FailureKind, not a string: {offenders}"
    assert _string_type_comparisons('if cause.type == "BudgetExceeded":\n    pass\n') == [1]  # the check sees it
