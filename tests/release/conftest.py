"""Release checks (marker `package`): they build and install, so they run as a stage of .ci/run
(with tests/deploy) and locally only when asked (RELEASE_TEST=1) or with `-m package`."""

from __future__ import annotations

import os

import pytest

ASKED = os.environ.get("RELEASE_TEST") == "1" or os.environ.get("DEPLOY_TEST_REQUIRE") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    explicit = "package" in (config.getoption("markexpr", "") or "")
    for item in items:
        if "tests/release/" in str(item.path):
            item.add_marker(pytest.mark.package)
            if not (ASKED or explicit):
                item.add_marker(pytest.mark.skip(reason="release build checks: RELEASE_TEST=1 or -m package"))
