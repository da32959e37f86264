"""What a test run actually did: how many tests ran, which failed, read from the runner's output.

An exit code of 0 does not say that anything was tested ("Ran 0 tests ... OK", a `test` script
that echoes, a crate with no tests), so the gate reads the summary each common runner prints:
pytest, unittest, node's test runner (TAP), mocha, jest, vitest, cargo, go, ctest and automake's
test harness, then plain TAP. Failing tests are named where the runner names them, so a failure
after a change can be told apart from one that was already there on the base commit.

No library reads the summaries of all these runners (each has its own JUnit/JSON option, which
would mean rewriting the repository's own test command), so the summaries are parsed here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable

from pydantic import BaseModel, Field

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class TestCounts(BaseModel):
    __test__ = False  # not a pytest class

    runner: str = ""  # which summaries were read ("" when none was recognised)
    ran: int | None = None  # None: no summary recognised, so the count is unknown
    passed: int = 0
    failed: int = 0
    errors: int = 0  # could not run: collection/import/compile errors
    skipped: int = 0
    failed_ids: list[str] = Field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.ran is not None

    def plus(self, other: TestCounts) -> TestCounts:
        return TestCounts(
            runner="+".join(dict.fromkeys(r for part in (self.runner, other.runner) for r in part.split("+") if r)),
            ran=(self.ran or 0) + (other.ran or 0),
            passed=self.passed + other.passed,
            failed=self.failed + other.failed,
            errors=self.errors + other.errors,
            skipped=self.skipped + other.skipped,
            failed_ids=self.failed_ids + other.failed_ids,
        )

    def describe(self) -> str:
        if not self.known:
            return "test count unknown (no runner summary recognised)"
        parts = [f"{self.ran} ran", f"{self.passed} passed", f"{self.failed} failed"]
        if self.errors:
            parts.append(f"{self.errors} error(s)")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        return f"{self.runner}: " + ", ".join(parts)


def _num(pattern: str, text: str, flags: int = 0) -> int:
    return sum(int(m) for m in re.findall(pattern, text, flags))


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in ids if i.strip()))


def _pytest(text: str) -> TestCounts | None:
    # the last summary line: "2 failed, 3 passed, 1 skipped in 0.12s" or "no tests ran in 0.01s"
    lines = re.findall(r"^=*\s*((?:\d+ \w+(?:, )?)+|no tests ran) in [\d.]+s\b.*$", text, re.M)
    if not lines:
        return None
    summary = lines[-1]
    count = dict((word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", summary))
    passed, failed = count.get("passed", 0), count.get("failed", 0)
    xs = count.get("xfailed", 0) + count.get("xpassed", 0)
    errors = count.get("error", 0) + count.get("errors", 0)
    # a parametrised id may hold spaces ("test_x[  #qwe]"): its brackets are taken whole
    ids = re.findall(r"^(?:FAILED|ERROR) (\S+?(?:\[.*?\])?)(?: - .*)?$", text, re.M)
    return TestCounts(
        runner="pytest", ran=passed + failed + xs, passed=passed + xs, failed=failed, errors=errors,
        skipped=count.get("skipped", 0), failed_ids=_unique(ids),
    )  # fmt: skip


def _unittest(text: str) -> TestCounts | None:
    ran_lines = re.findall(r"^Ran (\d+) tests? in [\d.]+s$", text, re.M)
    if not ran_lines:
        return None
    total = sum(int(n) for n in ran_lines)
    failing = re.findall(r"^(FAIL|ERROR): (\S+) \(([^)]*)\)", text, re.M)
    # an import error in a test module is reported as a test of unittest's own _FailedTest
    broken = [f for f in failing if "_FailedTest" in f[2]]
    failed = [f for f in failing if "_FailedTest" not in f[2]]
    skipped = _num(r"^(?:OK|FAILED) \(.*?skipped=(\d+)", text, re.M)
    ran = max(total - len(broken) - skipped, 0)
    return TestCounts(
        runner="unittest", ran=ran, passed=max(ran - len(failed), 0), failed=len(failed),
        errors=len(broken), skipped=skipped, failed_ids=_unique(f[2] for f in failing),
    )  # fmt: skip


def _node_tap(text: str) -> TestCounts | None:
    if not re.search(r"^# tests \d+$", text, re.M):
        return None
    ids = re.findall(r"^\s*not ok \d+ - (.+?)(?: # .*)?$", text, re.M)
    return TestCounts(
        runner="node --test", ran=_num(r"^# pass (\d+)$", text, re.M) + _num(r"^# fail (\d+)$", text, re.M),
        passed=_num(r"^# pass (\d+)$", text, re.M), failed=_num(r"^# fail (\d+)$", text, re.M),
        skipped=_num(r"^# (?:skipped|todo) (\d+)$", text, re.M), failed_ids=_unique(ids),
    )  # fmt: skip


def _mocha(text: str) -> TestCounts | None:
    if not re.search(r"^\s+\d+ passing \(", text, re.M):
        return None
    passed = _num(r"^\s+(\d+) passing \(", text, re.M)
    failed = _num(r"^\s+(\d+) failing$", text, re.M)
    ids = [f"{a} {b}" for a, b in re.findall(r"^\s+\d+\) (.+)\n\s+(.+?):$", text, re.M)]
    return TestCounts(
        runner="mocha", ran=passed + failed, passed=passed, failed=failed,
        skipped=_num(r"^\s+(\d+) pending$", text, re.M), failed_ids=_unique(ids),
    )  # fmt: skip


def _jest(text: str) -> TestCounts | None:
    lines = re.findall(r"^Tests:\s+(.*\d+ total)$", text, re.M)
    if not lines:
        return None
    count = dict((word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", lines[-1]))
    ids = re.findall(r"^\s+● (.+)$", text, re.M)
    passed, failed = count.get("passed", 0), count.get("failed", 0)
    return TestCounts(
        runner="jest", ran=passed + failed, passed=passed, failed=failed,
        skipped=count.get("skipped", 0) + count.get("todo", 0), failed_ids=_unique(ids),
    )  # fmt: skip


def _vitest(text: str) -> TestCounts | None:
    lines = re.findall(r"^\s*Tests\s+(.*)\((\d+)\)$", text, re.M)
    if not lines:
        return None
    count = dict((word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", lines[-1][0]))
    ids = re.findall(r"^\s*(?:FAIL|×)\s+(.+)$", text, re.M)
    passed, failed = count.get("passed", 0), count.get("failed", 0)
    return TestCounts(
        runner="vitest", ran=passed + failed, passed=passed, failed=failed,
        skipped=count.get("skipped", 0), failed_ids=_unique(ids),
    )  # fmt: skip


def _cargo(text: str) -> TestCounts | None:
    results = re.findall(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", text, re.M)
    compile_error = re.search(r"^error: could not compile", text, re.M)
    if not results and not compile_error:
        return None
    passed = sum(int(r[0]) for r in results)
    failed = sum(int(r[1]) for r in results)
    ids = re.findall(r"^test (\S+) \.\.\. FAILED$", text, re.M)
    return TestCounts(
        runner="cargo", ran=passed + failed, passed=passed, failed=failed, errors=1 if compile_error else 0,
        skipped=sum(int(r[2]) for r in results), failed_ids=_unique(ids),
    )  # fmt: skip


def _go(text: str) -> TestCounts | None:
    passed = len(re.findall(r"^\s*--- PASS: ", text, re.M))
    failed_ids = re.findall(r"^\s*--- FAIL: (\S+)", text, re.M)
    broken = re.findall(r"^FAIL\s+\S+\s+\[(?:build|setup) failed\]$", text, re.M)
    packages = re.search(r"^(?:ok  |FAIL|\?   )\t\S+\t", text, re.M)  # go's per-package lines
    if not (passed or failed_ids or broken or packages):
        return None
    return TestCounts(
        runner="go test", ran=passed + len(failed_ids), passed=passed, failed=len(failed_ids),
        errors=len(broken), skipped=len(re.findall(r"^\s*--- SKIP: ", text, re.M)), failed_ids=_unique(failed_ids),
    )  # fmt: skip


def _ctest(text: str) -> TestCounts | None:
    m = re.findall(r"^\d+% tests passed, (\d+) tests? failed out of (\d+)$", text, re.M)
    if not m:
        if re.search(r"^No tests were found!!!$", text, re.M):
            return TestCounts(runner="ctest", ran=0)
        return None
    failed, total = int(m[-1][0]), int(m[-1][1])
    ids = re.findall(
        r"^\s+\d+ - (\S+) \((?:Failed|SEGFAULT|Timeout|Not Run|Exception|Subprocess aborted)\)", text, re.M
    )
    return TestCounts(runner="ctest", ran=total, passed=total - failed, failed=failed, failed_ids=_unique(ids))


def _automake(text: str) -> TestCounts | None:
    if not re.search(r"^# TOTAL: +\d+$", text, re.M):
        return None
    passed = _num(r"^# (?:PASS|XFAIL): +(\d+)$", text, re.M)
    failed = _num(r"^# (?:FAIL|XPASS): +(\d+)$", text, re.M)
    errors = _num(r"^# ERROR: +(\d+)$", text, re.M)
    ids = re.findall(r"^(?:FAIL|XPASS|ERROR): (\S+)", text, re.M)
    return TestCounts(
        runner="make check", ran=passed + failed, passed=passed, failed=failed, errors=errors,
        skipped=_num(r"^# SKIP: +(\d+)$", text, re.M), failed_ids=_unique(ids),
    )  # fmt: skip


def _tap(text: str) -> TestCounts | None:
    if not re.search(r"^\s*1\.\.\d+", text, re.M):
        return None
    ok = len(re.findall(r"^\s*ok \d+", text, re.M))
    ids = re.findall(r"^\s*not ok \d+ -? ?(.*?)(?: # .*)?$", text, re.M)
    return TestCounts(runner="TAP", ran=ok + len(ids), passed=ok, failed=len(ids), failed_ids=_unique(ids))


_PARSERS: tuple[Callable[[str], TestCounts | None], ...] = (
    _pytest, _unittest, _node_tap, _mocha, _jest, _vitest, _cargo, _go, _ctest, _automake,
)  # fmt: skip


# The header npm, pnpm and yarn print before running a package's script ("> @scope/pkg@1.2.0 test").
_WORKSPACE_HEADER = re.compile(r"^> (@?[^\s@/]+(?:/[^\s@/]+)?)@\S+ test\b.*$", re.M)


def parse_results(output: str) -> TestCounts:
    """The runs every recognised runner reports in `output`, summed (a `make test` may run two);
    plain TAP only when no runner's own summary is there. A workspace run (`npm test
    --workspaces`) is read package by package, each failing test named with its package, so two
    packages' summaries are both counted and their tests of the same name are told apart."""
    text = _ANSI.sub("", output).replace("\r\n", "\n")
    pnpm = _pnpm_sections(text)
    if pnpm:
        parts = [_parse_one(body) for body in pnpm.values()]
        named = [
            part.model_copy(update={"failed_ids": [f"{where}: {i}" for i in part.failed_ids]})
            for where, part in zip(pnpm, parts, strict=True)
        ]
        return _summed([p for p in named if p.known])
    headers = list(_WORKSPACE_HEADER.finditer(text))
    if len({h.group(1) for h in headers}) < 2:
        return _parse_one(text)
    parts = [_parse_one(text[: headers[0].start()])]
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        section = _parse_one(text[header.end() : following.start() if following else len(text)])
        parts.append(section.model_copy(update={"failed_ids": [f"{header.group(1)}: {i}" for i in section.failed_ids]}))
    return _summed([p for p in parts if p.known])


# `pnpm -r test` prints "packages/a test$ node --test" before a member's run and prefixes every
# line of it with "packages/a test: " (the members' lines may interleave).
_PNPM_HEADER = re.compile(r"^(\S+) test\$ ", re.M)
_PNPM_LINE = re.compile(r"^(\S+) test: ?(.*)$", re.M)


def _pnpm_sections(text: str) -> dict[str, str]:
    """Each member's own output, prefixes removed, by its folder; empty when not a pnpm run."""
    members = set(_PNPM_HEADER.findall(text))
    sections: dict[str, list[str]] = {m: [] for m in sorted(members)}
    for where, line in _PNPM_LINE.findall(text):
        if where in sections:
            sections[where].append(line)
    return {where: "\n".join(lines) for where, lines in sections.items()}


def _parse_one(text: str) -> TestCounts:
    found = [c for c in (parse(text) for parse in _PARSERS) if c is not None]
    if not found:
        tap = _tap(text)
        found = [tap] if tap is not None else []
    return _summed(found)


def _summed(found: list[TestCounts]) -> TestCounts:
    return functools.reduce(TestCounts.plus, found) if found else TestCounts()


class Verdict(BaseModel):
    passed: bool
    untested: bool = False  # nothing could be run: a person decides, Tamma does not merge alone
    summary: str
    regressions: list[str] = Field(default_factory=list)  # passed (or did not exist) on the base, fail now
    preexisting: list[str] = Field(default_factory=list)  # failed on the base and still fail
    fixed: list[str] = Field(default_factory=list)  # failed on the base, pass now


def _failing(counts: TestCounts) -> set[str]:
    return set(counts.failed_ids)


def judge(
    after: TestCounts,
    exit_code: int,
    baseline: TestCounts | None,
    touched_tests: bool,
    baseline_exit: int | None = None,
) -> Verdict:
    """The gate on a test run after a change, against the same command's run on the base commit
    (`baseline`, and its exit code `baseline_exit`).

    Passes when tests ran, nothing that passed on the base fails, and, if some tests already
    failed there, the change either made one of them pass or changed tests itself (a change that
    leaves the failures exactly as they were has not shown it fixed anything). A runner whose
    output Tamma cannot read shows only its exit code: a command that failed on the base commit
    and passes now is evidence; one that passed before and passes now shows nothing — untested,
    so a person decides (it used to merge on the exit code alone)."""
    base = baseline if baseline is not None and baseline.known else None
    if not after.known:
        why = "test count unknown: no runner summary recognised"
        if exit_code != 0:
            return Verdict(passed=False, summary=f"exit {exit_code} ({why})")
        if baseline_exit not in (None, 0):
            return Verdict(
                passed=True,
                summary=f"exit 0 ({why}); the base commit's run failed (exit {baseline_exit}): the change made it pass",
            )
        return Verdict(
            passed=True,
            untested=True,
            summary=f"exit 0, as on the base commit ({why}): nothing shows the change was tested; set "
            "agent.test_command to a runner whose summary Tamma reads (pytest, unittest, node --test, mocha, "
            "jest, vitest, cargo, go test, ctest, TAP)",
        )
    if after.ran == 0:
        if base is not None and (base.ran or 0) > 0:
            return Verdict(
                passed=False,
                summary=f"no test ran after the change ({after.errors} error(s) loading them); "
                f"the base commit ran {base.ran}: the change broke the test suite",
            )
        if after.errors:
            return Verdict(passed=False, summary=f"no test ran: {after.errors} error(s) loading the tests")
        return Verdict(
            passed=exit_code == 0,
            untested=True,
            summary=f"{after.runner} ran no tests (neither did the base commit): nothing tested this change",
        )
    failing = _failing(after)
    if exit_code == 0 and not after.failed and not after.errors:
        fixed = sorted(_failing(base)) if base is not None else []
        return Verdict(passed=True, summary=after.describe(), fixed=fixed)
    if not failing:  # a failure the runner did not name: nothing to compare with the base
        return Verdict(passed=False, summary=f"{after.describe()}; exit {exit_code}")
    before = _failing(base) if base is not None else set()
    regressions, preexisting = sorted(failing - before), sorted(failing & before)
    fixed = sorted(before - failing)
    detail = after.describe()
    if regressions:
        shown = ", ".join(regressions[:10]) + (f" and {len(regressions) - 10} more" if len(regressions) > 10 else "")
        return Verdict(
            passed=False, summary=f"{detail}; failing because of the change: {shown}",
            regressions=regressions, preexisting=preexisting, fixed=fixed,
        )  # fmt: skip
    if not fixed and not touched_tests:
        return Verdict(
            passed=False,
            summary=f"{detail}; the same {len(preexisting)} test(s) fail as on the base commit: the change fixed none "
            "of them and added no test",
            preexisting=preexisting,
        )
    return Verdict(
        passed=True,
        summary=f"{detail}; {len(preexisting)} failure(s) were already there on the base commit (not the change's)",
        preexisting=preexisting, fixed=fixed,
    )  # fmt: skip


_CANNOT_RUN = re.compile(
    r"command not found|: not found$|No module named|ModuleNotFoundError|Cannot find module|"
    r"could not find `Cargo.toml`|no such file or directory|setup failed: tests were not run",
    re.I | re.M,
)


#: pytest's faulthandler_timeout dump (Tamma sets it for every test run, tamma.agent.environment):
#: the innermost frame of a function named test* is the test that hung
#: (after pytest's progress dots on the same line: "..FTimeout (0:00:05)!")
_FAULT_DUMP = re.compile(r"Timeout \(\d+:\d\d:\d\d(?:\.\d+)?\)!\s*\n[^\n]*most recent call first")
_FAULT_FRAME = re.compile(r'^\s*File "(?P<path>[^"\n]{1,500})", line (?P<line>\d+) in (?P<fn>test\w*)\s*$', re.M)


def hung_test(output: str, workspace: str = "/workspace") -> str | None:
    """The test a run was stuck in when pytest's faulthandler timeout fired: `path::name (line N)`
    with the path relative to the workspace, or None when the output has no such dump."""
    text = _ANSI.sub("", output)
    dumps = list(_FAULT_DUMP.finditer(text))
    if not dumps:
        return None
    frame = _FAULT_FRAME.search(text, dumps[-1].end())
    if frame is None:
        return None
    path = frame["path"]
    for prefix in (workspace.rstrip("/") + "/", "/workspace/"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    return f"{path}::{frame['fn']} (line {frame['line']})"


def broken_environment(
    counts: TestCounts, exit_code: int, output: str, timed_out: bool = False, limit_s: float = 0
) -> str | None:
    """Why the base commit's test run shows an environment that cannot test (not a bug the
    change could fix), or None. Judged on the base commit, before the agent changed anything."""
    if timed_out:
        stuck = hung_test(output)
        return (
            f"the tests did not finish within agent.sandbox.timeout_s ({limit_s:.0f}s)"
            + (f"; they were stuck in {stuck}" if stuck else "")
            + ": raise agent.sandbox.timeout_s, or set agent.test_command to the tests that finish"
        )
    if exit_code == 0:
        return None
    if counts.known and counts.ran == 0:
        if counts.errors:
            return f"the tests do not load on the base commit ({counts.errors} error(s) collecting or compiling them)"
        return "the test command ran no tests and failed"
    if not counts.known:
        text = _ANSI.sub("", output)
        m = _CANNOT_RUN.search(text)
        if exit_code in (126, 127) or m:
            line = next((ln for ln in text.splitlines() if _CANNOT_RUN.search(ln)), "") if m else ""
            return f"the test command cannot run: {line.strip()[:200] or f'exit {exit_code}'}"
    return None


class Baseline(BaseModel):
    """The repository's test command on its base commit, before any change."""

    command: str | None
    counts: TestCounts = Field(default_factory=TestCounts)
    exit_code: int = 0
    broken: str | None = None  # why this environment cannot test (see `broken_environment`)
    output_tail: str = ""
    summary: str = ""

    def explain(self) -> str:
        """The setup error a person reads: the cause, the fix, and the run's last lines."""
        tail = "\n".join(self.output_tail.strip().splitlines()[-15:])
        return (
            f"the repository's tests cannot run here, before any change ({self.broken}; `{self.command}` on the "
            "base commit). This is a setup problem, not the issue's: give the repository a setup "
            "(.tamma/setup.sh or agent.setup_command), name its test command (agent.test_command or test_command "
            "in .tamma/config.toml), or make its toolchain visible to the sandbox (agent.sandbox.toolchains); "
            f"`tamma doctor` shows what Tamma detects. Last lines:\n{tail}"
        )

    def for_prompt(self) -> str:
        """What the coding agent is told about the tests before it changes anything."""
        if self.command is None:
            return f"No test command was found for this repository ({self.summary})."
        text = (
            f"The test command is `{self.command}`. On the base commit, before your change: {self.counts.describe()}."
        )
        if self.counts.failed_ids:
            text += " Already failing there: " + ", ".join(self.counts.failed_ids[:20])
        return text
