"""One error hierarchy for Tamma.

    TammaError                      base; ``retryable`` says whether a retry can help
    ├── ConfigError                 settings missing, unreadable or invalid (not retryable)
    ├── NotFoundError               an issue, repository or task that does not exist (not retryable)
    ├── InvalidInputError           bad input from a user or a caller (not retryable)
    │   └── NotReady                the task cannot take this now (e.g. no worker serves it)
    │       └── DecisionQueued      a decision no worker took in time, queued for when one does
    ├── PlatformError               a git platform failed (retryable unless said otherwise)
    │   ├── GitError                a git command failed
    │   └── MergeBlockedError       policy, conflicts or a dirty target forbid the merge (not retryable)
    │       └── MergeWaiting        the forge holds the merge until a review or a required check (waited for)
    ├── ProviderError               an LLM provider failed (retryable unless said otherwise)
    │   └── TranscriptMismatch      a scripted replay diverged from its recording (not retryable)
    ├── EnvironmentBroken           the repository's tests cannot run on its base commit (not retryable)
    ├── BudgetExceeded              an issue's token, cost, turn or time budget ran out (not retryable)
    ├── SandboxError                a sandboxed command could not be run
    ├── TemporalUnavailable         the Temporal server cannot be reached
    └── AuthError                   missing or invalid credentials on an API call
        └── PermissionDenied        valid credentials, insufficient role

The CLI turns these into one line and an exit code (``tamma.cli.errors``); activities turn them
into Temporal ``ApplicationError`` (``tamma.activities.errors``). Each message says what was
wrong, where, and what to do.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class FailureKind(StrEnum):
    """The failures the workflow decides on, as they travel in `ApplicationError.type`: the one
    vocabulary shared by the activities that raise them and the workflow that reads them. The
    values are fixed — recorded histories hold them — so renaming a class changes nothing on the
    wire; a kind the workflow acts on is named here, never as a string in the workflow."""

    BUDGET_EXCEEDED = "BudgetExceeded"
    RATE_LIMITED = "RateLimited"
    MERGE_WAITING = "MergeWaiting"


class TammaError(Exception):
    """Base of every error Tamma raises on purpose."""

    retryable: bool = False
    exit_code: int = 1
    #: the kind the workflow decides on (inherited by subclasses); None: the class name travels
    kind: ClassVar[FailureKind | None] = None

    def __init__(self, message: str, *, retryable: bool | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: a server-given wait (e.g. HTTP retry-after) that Temporal's next retry should honour
        self.retry_after_s = retry_after_s
        if retryable is not None:
            self.retryable = retryable
        #: model usage billed by the attempt that failed (and earlier ones), for the task's totals
        self.usage: dict[str, object] | None = None

    def details(self) -> list[object]:
        """Extra data for the workflow (kept small: it enters history)."""
        return [{"usage": self.usage}] if self.usage else []

    def failure_type(self) -> str:
        """What `ApplicationError.type` carries for this error."""
        return self.kind.value if self.kind is not None else type(self).__name__


class ConfigError(TammaError):
    """Settings are missing, unreadable or invalid."""

    exit_code = 2


class NotFoundError(TammaError):
    """Something named by the user does not exist."""

    exit_code = 3


class InvalidInputError(TammaError):
    """Input from a user or caller is malformed."""

    exit_code = 2


class NotReady(InvalidInputError):
    """The request is valid but the task cannot take it now (no worker, wrong state)."""

    exit_code = 6


class DecisionQueued(NotReady):
    """No worker took a decision in time; it was queued (a signal) and takes effect when one
    does. Not a failure: the decision is recorded."""

    exit_code = 0


class PlatformError(TammaError):
    """A git platform operation failed; transient unless said otherwise."""

    retryable = True


class GitError(PlatformError):
    """A git command failed."""


class MergeBlockedError(PlatformError):
    """The merge cannot happen until a person acts (conflict, dirty target, policy)."""

    retryable = False


class MergeWaiting(MergeBlockedError):
    """The forge holds the merge until something outside Tamma happens — a required approving
    review, a required check still to report. The workflow waits for it (a webhook nudge or a
    backing-off timer) instead of failing the task."""

    kind = FailureKind.MERGE_WAITING


class ProviderError(TammaError):
    """An LLM provider failed; transient unless said otherwise."""

    retryable = True
    #: a rate limit or overload (429/529): waited out, never a failed step (providers.ratelimit)
    rate_limited = False
    #: the prompt did not fit the model's context window: the agent condenses and asks again
    context_overflow = False


class TranscriptMismatch(ProviderError):
    """A scripted replay was asked for something its recording does not hold."""

    retryable = False


class BudgetExceeded(TammaError):
    """A per-issue budget ran out; `spent` is the usage up to that point."""

    kind = FailureKind.BUDGET_EXCEEDED

    def __init__(self, message: str, spent: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.spent = spent or {}

    def details(self) -> list[object]:
        return [self.spent, *super().details()]


class SandboxError(TammaError):
    """A command could not be run in the sandbox."""

    retryable = True


class EnvironmentBroken(TammaError):
    """The repository's tests cannot run here, on its base commit, before any change: a setup
    problem for a person to fix (setup script, test command, toolchain), never the model's."""


class TemporalUnavailable(TammaError):
    """The Temporal server cannot be reached."""

    exit_code = 4


class AuthError(TammaError):
    """The caller is not authenticated (no, expired or invalid token)."""

    exit_code = 5


class PermissionDenied(AuthError):
    """The caller is authenticated but its role does not allow this."""


#: What Python's parsers (ast, json, tomllib) raise on deeply nested input instead of their own
#: error: a 200 KB `[[[[…` in a pyproject.toml or `1+1+1…` in a setup.py is RecursionError or
#: MemoryError. Every parse of text a repository or a model wrote catches these as "unreadable".
TOO_DEEP = (RecursionError, MemoryError)
