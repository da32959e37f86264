"""How review comments become the coding agent's feedback: threaded, new ones only."""

from __future__ import annotations

from tamma.models import ReviewComment
from tamma.workflows.review import review_feedback


def c(cid: int, author: str, body: str, **kw: object) -> ReviewComment:
    return ReviewComment.model_validate({"id": cid, "author": author, "body": body, **kw})


ROOT = c(1, "alice", "Name the constant", path="pager.py", line=4)
REPLY = c(2, "bob", "and document it", path="pager.py", line=4, thread=1)
REVIEW = c(-9, "carol", "Nearly there", verdict="CHANGES_REQUESTED")


def test_nothing_new_is_no_feedback() -> None:
    assert review_feedback([ROOT, REPLY], seen={1, 2}) == ("", [])


def test_replies_sit_under_their_thread_and_review_bodies_have_their_verdict() -> None:
    text, fresh = review_feedback([ROOT, REPLY, REVIEW], seen=set())
    assert fresh == [1, 2, -9]
    assert text.splitlines() == [
        "Review comments on the pull request; address each one:",
        "- pager.py:4, alice: Name the constant",
        "  - reply from bob: and document it",
        "- the change as a whole, carol (changes requested): Nearly there",
    ]


def test_a_new_reply_to_an_answered_comment_quotes_it_as_context() -> None:
    later = c(3, "alice", "also the second one", thread=1)
    text, fresh = review_feedback([ROOT, REPLY, later], seen={1, 2})
    assert fresh == [3]
    assert text.splitlines()[1:] == [
        "- pager.py:4, alice (earlier): Name the constant",
        "  - reply from alice: also the second one",
    ]


def test_a_reply_whose_thread_is_gone_stands_alone_and_long_bodies_are_cut() -> None:
    orphan = c(4, "dave", "x" * 5000, path="a.py", thread=77)
    text, _ = review_feedback([orphan], seen=set())
    line = text.splitlines()[1]
    assert line.startswith("- a.py, dave: xxx") and line.endswith(" [...]") and len(line) < 2100
