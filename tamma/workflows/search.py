"""Custom search attributes: they make tasks listable and filterable in the API, the CLI and
the Web UI straight from Temporal's visibility store (no second task table)."""

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

REPOSITORY = SearchAttributeKey.for_keyword("TammaRepository")
ISSUE = SearchAttributeKey.for_int("TammaIssue")
STEP = SearchAttributeKey.for_keyword("TammaStep")
STATUS = SearchAttributeKey.for_keyword("TammaStatus")

ALL = (REPOSITORY, ISSUE, STEP, STATUS)


def workflow_id(repo_key: str, issue_number: int) -> str:
    """The stable id of an issue's work: a redelivered webhook or a second `tamma start`
    reaches the same workflow instead of starting a twin."""
    return f"tamma:{repo_key}#{issue_number}"


def new_task(repo_key: str, issue_number: int) -> TypedSearchAttributes:
    """The attributes a task starts with (the workflow keeps step and status up to date)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(REPOSITORY, repo_key),
            SearchAttributePair(ISSUE, issue_number),
            SearchAttributePair(STEP, "queued"),
            SearchAttributePair(STATUS, "running"),
        ]
    )


def summary(repo_key: str, issue_number: int, title: str = "") -> str:
    """A task's one line in the Temporal Web UI's list: "#12 Fix off-by-one in paginate() — github:acme/api"."""
    title = " ".join(title.split())[:120]
    return f"#{issue_number} {title} — {repo_key}" if title else f"#{issue_number} — {repo_key}"
