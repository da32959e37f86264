"""Review feedback as the coding agent reads it: new comments grouped by thread, each with where
it points and, for a reply, the comment it answers. Pure and deterministic (workflow code)."""

from __future__ import annotations

from tamma.models import CIStatus, ReviewComment, SelfReview, TestReport


def _where(c: ReviewComment) -> str:
    if c.path:
        return f"{c.path}:{c.line}" if c.line else c.path
    return "the change as a whole"


def _quote(text: str, limit: int = 2000) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


def review_feedback(comments: list[ReviewComment], seen: set[int]) -> tuple[str, list[int]]:
    """(feedback text, ids now addressed) for the comments not in `seen`; "" when nothing is new.

    A reply is shown under the comment it answers, so the agent reads "and also X" in context."""
    fresh = [c for c in comments if c.id not in seen]
    if not fresh:
        return "", []
    by_id = {c.id: c for c in comments}
    roots: dict[int, list[ReviewComment]] = {}
    for c in fresh:
        roots.setdefault(c.thread if c.thread in by_id else c.id, []).append(c)
    lines: list[str] = []
    for root_id, group in roots.items():
        root = by_id[root_id]
        head = f"- {_where(root)}, {root.author}"
        if root.verdict:
            head += f" ({root.verdict.lower().replace('_', ' ')})"
        new_root = root in group
        lines.append(f"{head}: {_quote(root.body)}" if new_root else f"{head} (earlier): {_quote(root.body, 300)}")
        lines += [f"  - reply from {c.author}: {_quote(c.body)}" for c in group if c is not root]
    head = "Review comments on the pull request; address each one:\n"
    return head + "\n".join(lines), [c.id for c in fresh]


def self_review_feedback(review: SelfReview) -> str:
    """The self-review's findings as the coding agent reads them."""
    lines = [f"A reviewer read your change and asks for fixes first: {_quote(review.summary, 500)}"]
    for f in review.findings:
        where = f"{f.path}:{f.line}" if f.path and f.line else (f.path or "the change as a whole")
        lines.append(f"- {where}: {_quote(f.problem, 1000)}")
        if f.suggestion:
            lines.append(f"  suggestion: {_quote(f.suggestion, 1000)}")
    return "\n".join(lines)


def ci_feedback(status: CIStatus, attempt: int, attempts: int) -> str:
    """A failed CI as the coding agent reads it: each failing check, its own summary and the end
    of its log. The text is the repository's CI output, handed over like a review comment."""
    lines = [
        f"CI failed on the pull request ({_quote(status.detail, 300)}); find the cause and fix it "
        f"(CI fix attempt {attempt} of {attempts}).",
    ]
    for f in status.failures:
        lines.append(f"- check {f.name}" + (f": {_quote(f.summary, 1500)}" if f.summary else ""))
        if f.log:
            lines.append("  end of its log:")
            lines += [f"    {line}" for line in f.log.strip()[-4500:].splitlines()]  # a log's end is what counts
    if not status.failures:
        lines.append("- the forge named no failing check; run the tests and look for what CI would see")
    return "\n".join(lines)


def ci_failed_note(status: CIStatus, attempts: int) -> str:
    """What Tamma says on the pull request when CI still fails after its fix attempts."""
    lines = [
        f"Tamma stopped: CI still fails after {attempts} fix attempt(s) ({_quote(status.detail, 300)}).",
        "",
    ]
    for f in status.failures:
        summary = _quote(f.summary.splitlines()[0], 300) if f.summary.strip() else "(no summary)"
        link = f" — {f.url}" if f.url else ""
        lines.append(f"- **{f.name}**: {summary}{link}")
    lines += ["", "Push a fix to this branch, or retry the task once CI can pass."]
    return "\n".join(lines)


def tests_note(reports: list[TestReport]) -> str:
    """How the change was tested, for the PR body: the last run, what the base commit did, and
    where the command came from."""
    if not reports:
        return ""
    last = reports[-1]
    if last.untested:
        return f"⚠ Not tested: {last.summary}. Tamma does not merge this on its own."
    lines = [f"- `{last.command}` ({last.command_source}): {last.summary}"]
    if last.baseline:
        lines.append(f"- {last.baseline}")
    if last.fixed:
        lines.append(f"- now passing (failed on the base commit): {', '.join(last.fixed[:10])}")
    if last.preexisting:
        lines.append(f"- already failing on the base commit, not this change's: {', '.join(last.preexisting[:10])}")
    return "\n".join(lines)
