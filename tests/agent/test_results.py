"""Reading what a test run did, and the gate built on it. Runners installed here are run for
real (pytest, unittest, node --test, ctest); the others are read from output in the exact form
those runners print (mocha 10, jest 29, vitest 2, go 1.22, automake 1.16)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tamma.agent.results import TestCounts, broken_environment, hung_test, judge, parse_results


def run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


@pytest.fixture
def pyproject(tmp_path: Path) -> Path:
    (tmp_path / "test_a.py").write_text(
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_ok(self): self.assertEqual(1, 1)\n"
        "    def test_bad(self): self.assertEqual(1, 2)\n"
        "    @unittest.skip('x')\n"
        "    def test_skip(self): pass\n"
    )
    return tmp_path


def test_pytest_and_unittest_runs_are_counted_and_failures_named(pyproject: Path) -> None:
    got = parse_results(run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"], pyproject))
    assert (got.runner, got.ran, got.passed, got.failed, got.skipped) == ("pytest", 2, 1, 1, 1)
    assert got.failed_ids == ["test_a.py::T::test_bad"]
    got = parse_results(run([sys.executable, "-m", "unittest", "discover", "-v"], pyproject))
    assert (got.runner, got.ran, got.passed, got.failed, got.skipped) == ("unittest", 2, 1, 1, 1)
    assert got.failed_ids == ["test_a.T.test_bad"]


def test_parametrised_pytest_ids_with_spaces_and_dashes_are_named_whole(tmp_path: Path) -> None:
    """Found on iniconfig: `test_iscommentline_true[  #qwe]` was read as nothing, so the gate
    could not say the change fixed it."""
    (tmp_path / "test_p.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('line', ['#ok', '  #qwe', 'a - b'])\n"
        "def test_line(line):\n"
        "    assert line.startswith('#'), 'not a comment - really'\n"
    )
    got = parse_results(run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"], tmp_path))
    assert (got.ran, got.failed) == (3, 2)
    assert got.failed_ids == ["test_p.py::test_line[  #qwe]", "test_p.py::test_line[a - b]"]


def test_a_module_that_does_not_import_is_an_error_not_a_test(pyproject: Path) -> None:
    (pyproject / "test_a.py").unlink()
    (pyproject / "test_b.py").write_text("import not_installed_anywhere\n")
    got = parse_results(run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"], pyproject))
    assert got.ran == 0 and got.errors == 1
    got = parse_results(run([sys.executable, "-m", "unittest", "discover", "-v"], pyproject))
    assert got.ran == 0 and got.errors == 1


def test_no_tests_at_all_is_zero_not_unknown(tmp_path: Path) -> None:
    assert parse_results(run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path)).ran == 0
    assert parse_results(run([sys.executable, "-m", "unittest", "discover", "-v"], tmp_path)).ran == 0


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_node_test_runner(tmp_path: Path) -> None:
    (tmp_path / "a.test.mjs").write_text(
        "import { test } from 'node:test';\nimport assert from 'node:assert';\n"
        "test('good', () => assert.equal(1, 1));\ntest('bad one', () => assert.equal(1, 2));\n"
    )
    got = parse_results(run(["node", "--test"], tmp_path))
    assert (got.runner, got.ran, got.passed, got.failed) == ("node --test", 2, 1, 1)
    assert got.failed_ids == ["bad one"]


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed")
def test_a_workspace_run_is_counted_package_by_package_and_failures_named_with_their_package(
    tmp_path: Path,
) -> None:
    """Two packages whose tests have the same names: both summaries count, the failures differ."""
    (tmp_path / "package.json").write_text(json.dumps({"private": True, "workspaces": ["packages/*"]}))
    for name, bad in (("alpha", "1, 2"), ("beta", "2, 2")):
        pkg = tmp_path / "packages" / name
        pkg.mkdir(parents=True)
        (pkg / "package.json").write_text(
            json.dumps({"name": f"@t/{name}", "version": "1.0.0", "scripts": {"test": "node --test"}})
        )
        (pkg / "a.test.js").write_text(
            "const { test } = require('node:test');\nconst assert = require('node:assert');\n"
            f"test('same name', () => assert.equal({bad}));\ntest('fine', () => {{}});\n"
        )
    got = parse_results(run(["npm", "test", "--workspaces", "--if-present"], tmp_path))
    assert (got.runner, got.ran, got.passed, got.failed) == ("node --test", 4, 3, 1)
    assert got.failed_ids == ["@t/alpha: same name"]


@pytest.mark.skipif(shutil.which("ctest") is None, reason="cmake not installed")
def test_ctest(tmp_path: Path) -> None:
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.10)\nproject(t NONE)\nenable_testing()\n"
        "add_test(NAME passes COMMAND true)\nadd_test(NAME fails COMMAND false)\n"
    )
    out = run(["sh", "-c", "cmake -S . -B build && cmake --build build && ctest --test-dir build"], tmp_path)
    got = parse_results(out)
    assert (got.runner, got.ran, got.failed, got.failed_ids) == ("ctest", 2, 1, ["fails"]), out


MOCHA = """
  inRange
    1) includes the lower bound
    ✔ excludes the upper bound

  6 passing (6ms)
  1 failing
  2 pending

  1) inRange
       includes the lower bound:
      AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:
"""
JEST = """
FAIL src/sum.test.js
  ● math › adds

    expect(received).toBe(expected)

Tests:       1 failed, 1 skipped, 4 passed, 6 total
"""
VITEST = """
 FAIL  src/sum.test.ts > math > adds
 Test Files  1 failed (1)
      Tests  1 failed | 3 passed (4)
"""
GO = """=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestSub
    sub_test.go:9: got 1
--- FAIL: TestSub (0.00s)
FAIL
FAIL\texample.com/calc\t0.002s
ok  \texample.com/other\t0.001s
"""
GO_BUILD = "# example.com/calc\n./calc.go:3:1: syntax error\nFAIL\texample.com/calc [build failed]\n"
CARGO_COMPILE = "error[E0308]: mismatched types\nerror: could not compile `roman` (lib test) due to 1 previous error\n"
AUTOMAKE = "PASS: t1\nFAIL: t2\n# TOTAL: 3\n# PASS:  2\n# SKIP:  0\n# XFAIL: 0\n# FAIL:  1\n# XPASS: 0\n# ERROR: 0\n"


@pytest.mark.parametrize(
    ("output", "runner", "ran", "failed", "ids"),
    [
        (MOCHA, "mocha", 7, 1, ["inRange includes the lower bound"]),
        (JEST, "jest", 5, 1, ["math › adds"]),
        (VITEST, "vitest", 4, 1, ["src/sum.test.ts > math > adds"]),
        (GO, "go test", 2, 1, ["TestSub"]),
        (GO_BUILD, "go test", 0, 0, []),
        (CARGO_COMPILE, "cargo", 0, 0, []),
        (AUTOMAKE, "make check", 3, 1, ["t2"]),
        ("1..3\nok 1 - a\nnot ok 2 - b\nok 3 - c\n", "TAP", 3, 1, ["b"]),
    ],
)
def test_other_runners_summaries(output: str, runner: str, ran: int, failed: int, ids: list[str]) -> None:
    got = parse_results(output)
    assert (got.runner, got.ran, got.failed, got.failed_ids) == (runner, ran, failed, ids)


def test_output_with_no_summary_is_unknown_and_ansi_colour_is_ignored() -> None:
    assert not parse_results("all good!\n").known
    assert parse_results("\x1b[32m3 passed\x1b[0m in 0.10s\n").ran == 3


def counts(ran: int, failed: list[str], errors: int = 0) -> TestCounts:
    return TestCounts(
        runner="pytest", ran=ran, passed=ran - len(failed), failed=len(failed), errors=errors, failed_ids=failed
    )


def test_the_gate() -> None:
    base = counts(10, ["t::bug"])
    # the fix: the bug's test passes now, nothing else broke
    ok = judge(counts(10, []), 0, base, touched_tests=False)
    assert ok.passed and ok.fixed == ["t::bug"]
    # nothing ran: never a pass when the base commit ran tests
    assert not judge(counts(0, [], errors=1), 2, base, False).passed
    # nothing ran anywhere: untested (a person decides)
    none = judge(counts(0, []), 0, counts(0, []), False)
    assert none.untested and none.passed
    # a test that passed on the base fails now: the change's fault
    broke = judge(counts(10, ["t::bug", "t::other"]), 1, base, False)
    assert not broke.passed and broke.regressions == ["t::other"]
    # the same failures as before, no test touched: fixed nothing
    same = judge(counts(10, ["t::bug"]), 1, base, False)
    assert not same.passed and "fixed none" in same.summary
    # a pre-existing unrelated failure, and the change fixed another and added tests: passes, reported
    base2 = counts(10, ["t::bug", "t::flaky_network"])
    mixed = judge(counts(11, ["t::flaky_network"]), 1, base2, touched_tests=True)
    assert mixed.passed and mixed.preexisting == ["t::flaky_network"] and mixed.fixed == ["t::bug"]
    # a runner whose summary Tamma cannot read: only its exit code, compared with the base commit's
    unknown = judge(TestCounts(), 0, base, False)
    assert unknown.passed and unknown.untested and "unknown" in unknown.summary  # no baseline exit: shows nothing
    same = judge(TestCounts(), 0, TestCounts(), False, baseline_exit=0)
    assert same.passed and same.untested and "agent.test_command" in same.summary  # passed before too: a person decides
    made_pass = judge(TestCounts(), 0, TestCounts(), False, baseline_exit=1)
    assert made_pass.passed and not made_pass.untested and "made it pass" in made_pass.summary
    assert not judge(TestCounts(), 2, TestCounts(), False, baseline_exit=0).passed
    # failures the runner did not name cannot be compared: refused
    assert not judge(TestCounts(runner="x", ran=3, passed=2, failed=1), 1, base, False).passed


def test_a_broken_environment_is_told_from_a_bug() -> None:
    assert broken_environment(counts(0, [], errors=2), 2, "") is not None  # does not even load
    assert broken_environment(TestCounts(), 127, "sh: 1: mocha: not found") is not None
    assert broken_environment(TestCounts(), 1, "/usr/bin/python3: No module named pytest") is not None
    assert broken_environment(counts(5, ["t::bug"]), 1, "") is None  # tests ran: a bug, not the environment
    assert broken_environment(TestCounts(), 0, "") is None


# `pnpm -r test` with members run in parallel (pnpm 9): each line prefixed with the member's
# folder; the two members' lines interleave.
PNPM_PARALLEL = """Scope: 2 of 3 workspace projects
packages/bytes test$ node --test test/
packages/report test$ node --test test/
packages/bytes test: TAP version 13
packages/report test: TAP version 13
packages/bytes test: # Subtest: small counts stay in bytes
packages/bytes test: ok 1 - small counts stay in bytes
packages/report test: # Subtest: one file is singular
packages/report test: ok 1 - one file is singular
packages/bytes test: # Subtest: a whole kibibyte is shown as 1 KiB
packages/bytes test: not ok 2 - a whole kibibyte is shown as 1 KiB
packages/report test: # Subtest: sizes add up
packages/report test: not ok 2 - sizes add up
packages/bytes test: 1..2
packages/bytes test: # tests 2
packages/bytes test: # pass 1
packages/bytes test: # fail 1
packages/report test: 1..2
packages/report test: # tests 2
packages/report test: # pass 1
packages/report test: # fail 1
packages/bytes test: Failed
packages/report test: Failed
/tmp/pw/packages/bytes:
 ERR_PNPM_RECURSIVE_RUN_FIRST_FAIL  @fixture/bytes@1.2.0 test: `node --test test/`
"""


def test_a_parallel_pnpm_workspace_run_is_read_member_by_member() -> None:
    got = parse_results(PNPM_PARALLEL)
    assert (got.ran, got.passed, got.failed) == (4, 2, 2)
    assert got.failed_ids == ["packages/bytes: a whole kibibyte is shown as 1 KiB", "packages/report: sizes add up"]


def test_a_run_killed_for_hanging_names_the_test_it_was_stuck_in() -> None:
    """pytest's faulthandler dump (Tamma sets faulthandler_timeout for every run) comes right
    after the progress characters; the innermost test function's frame is the hung test."""
    output = (
        "..F.Timeout (0:00:05)!\n"
        "Thread 0x00007fb8ea676b80 (most recent call first):\n"
        '  File "/usr/lib/python3.11/threading.py", line 320 in wait\n'
        '  File "/workspace/tests/net/test_client.py", line 41 in test_reconnects\n'
        '  File "/tamma/env/lib/python3.11/site-packages/_pytest/python.py", line 166 in pytest_pyfunc_call\n'
        "\n[tamma] killed after 20s wall-clock limit\n"
    )
    assert hung_test(output) == "tests/net/test_client.py::test_reconnects (line 41)"
    assert hung_test("....\n3 passed in 0.1s\n") is None
    assert hung_test("Timeout (0:00:05)!\nno dump follows\n") is None
    why = broken_environment(TestCounts(), -9, output, timed_out=True, limit_s=20)
    assert why is not None and "did not finish within agent.sandbox.timeout_s (20s)" in why
    assert "stuck in tests/net/test_client.py::test_reconnects" in why and "agent.test_command" in why
    plain = broken_environment(TestCounts(), -9, "....", timed_out=True, limit_s=20)
    assert plain is not None and "stuck" not in plain  # no dump (not pytest): the limit alone


def test_a_killed_baseline_is_never_kept_and_one_kept_by_an_older_version_is_run_again(tmp_path: Path) -> None:
    from tamma.agent.results import Baseline
    from tamma.agent.testing import TestCommand
    from tamma.config import Settings
    from tamma.models import RepoRef
    from tamma.runtime.wiring import build_activities

    acts = build_activities(Settings(data_dir=tmp_path / "data"))
    repo, found = RepoRef(platform="local", locator=str(tmp_path / "r")), TestCommand("python3 -m pytest", "pytest")
    killed = Baseline(command=found.command, exit_code=-9, summary="base commit: did not finish within 30s")
    acts._store_baseline(repo, "a" * 40, found, killed)
    assert acts._cached_baseline(repo, "a" * 40, found) is None  # not stored
    path = acts._baseline_path(repo, "a" * 40, found)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(killed.model_dump_json())  # as an older version stored it
    assert acts._cached_baseline(repo, "a" * 40, found) is None  # ignored: run again
    finished = killed.model_copy(update={"exit_code": 1, "summary": "base commit: 3 ran, 1 failed"})
    acts._store_baseline(repo, "a" * 40, found, finished)
    cached = acts._cached_baseline(repo, "a" * 40, found)
    assert cached is not None and cached.exit_code == 1
