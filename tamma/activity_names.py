"""Activity names, shared by the workflow (which calls them by name, importing no I/O code)
and the activities module (which registers under them)."""

FETCH_ISSUE = "fetch_issue"
ANALYSE = "analyse"
PLAN = "plan"
CREATE_BRANCH = "create_branch"
IMPLEMENT = "implement"
RUN_TESTS = "run_tests"
SELF_REVIEW = "self_review"
OPEN_PR = "open_pr"
CI_STATUS = "ci_status"
WAIT_FOR_CI = "wait_for_ci"
REVIEW_COMMENTS = "review_comments"
REPLY_TO_REVIEWS = "reply_to_reviews"
MERGE = "merge"
COMMENT = "comment_issue"
PROGRESS = "update_progress"
POLL_CANDIDATES = "poll_candidates"
NOTIFY = "notify"

#: activities that hold a workspace and run code; they go to the heavy task queue, whose
#: worker's concurrency bounds how many issues are being coded or tested at once.
HEAVY = frozenset({IMPLEMENT, RUN_TESTS, SELF_REVIEW})


def heavy_queue(task_queue: str) -> str:
    return f"{task_queue}-heavy"
