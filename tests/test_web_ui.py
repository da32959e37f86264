"""Approve from the Temporal Web UI, in a real browser: Debian's chromium, headless, driven by
Selenium against a dev server's own UI. A person who only has the Web UI opens the waiting task,
sends the `approve_signal` with the documented input, and the task merges. Screenshots of the
list, the waiting task's page and the sent signal go to the test's temp dir, or to the folder
named by UI_SCREENSHOTS.

Needs chromium and chromedriver (`.ci/observability-tools.sh` installs them); skipped with the
reason where they are missing, except in CI (OBSERVABILITY_TEST_REQUIRE=1)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tamma.config import Settings
from tamma.demo import make_demo
from tamma.models import IssueTaskInput, TaskStatus
from tamma.providers.scripted import DEMO_TRANSCRIPT
from tamma.runtime.embedded import temporal_binary
from tamma.runtime.tasks import TaskService
from tamma.runtime.wiring import build_activities
from tamma.workflows import search
from tests.conftest import running_worker
from tests.ports import free_port
from tests.workflows.test_issue_workflow import wait_for_status

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REQUIRED = os.environ.get("OBSERVABILITY_TEST_REQUIRE") == "1"
pytestmark = [
    pytest.mark.prometheus,  # the same CI tool stage (.ci/observability-tools.sh)
    pytest.mark.skipif(not (CHROMIUM and DRIVER) and not REQUIRED, reason="chromium/chromedriver are not installed"),
]


@pytest.fixture
async def with_ui() -> AsyncIterator[tuple[WorkflowEnvironment, int]]:
    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=list(search.ALL),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        ui=True,
        ui_port=port,
    )
    try:
        yield env, port
    finally:
        await env.shutdown()


def shown(driver: Any, by: str, what: str) -> Any:
    """The first element matching that a person can see and use (the UI renders some twice, one
    of them hidden for narrow screens); False while there is none."""
    return next((e for e in driver.find_elements(by, what) if e.is_displayed() and e.is_enabled()), False)


def clicked(driver: Any, by: str, what: str) -> bool:
    """Click the first match that takes a click (menus render items a person cannot reach too)."""
    from selenium.common.exceptions import WebDriverException

    for element in driver.find_elements(by, what):
        if not element.is_displayed():
            continue
        try:
            element.click()
            return True
        except WebDriverException:
            continue
    return False


def approve_in_browser(ui: str, wid: str, shots: Path) -> dict[str, Any]:
    """What a person does in the Web UI; synchronous (Selenium), run off the event loop."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    seen: dict[str, Any] = {}
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(f"{ui}/namespaces/default/workflows")
        wait.until(ec.presence_of_element_located((By.PARTIAL_LINK_TEXT, wid)))
        driver.save_screenshot(str(shots / "list.png"))
        driver.get(f"{ui}/namespaces/default/workflows/{urllib.parse.quote(wid, safe='')}")
        more = wait.until(lambda d: shown(d, By.CSS_SELECTOR, "button[aria-controls='workflow-actions']"))
        seen["page"] = driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(str(shots / "waiting.png"))
        more.click()
        wait.until(lambda d: clicked(d, By.XPATH, "//*[@role='menuitem' and normalize-space()='Send a Signal']"))
        # With a worker up, the UI lists the workflow's own signals (it asks the worker); the
        # person picks approve_signal from that list.
        wait.until(lambda d: clicked(d, By.CSS_SELECTOR, "[data-testid='signal-select-button']"))
        option = "//li[@role='option'][.//span[normalize-space()='approve_signal']]"
        wait.until(lambda d: clicked(d, By.XPATH, option))
        data = wait.until(
            lambda d: shown(d, By.CSS_SELECTOR, "[data-testid='signal-confirmation-modal'] [role='textbox']")
        )
        data.click()
        data.send_keys(Keys.CONTROL, "a")
        data.send_keys(Keys.DELETE)
        data.send_keys('{"by": "web-ui-person", "reason": "read it in the Web UI"}')
        submit = "[data-testid='signal-confirmation-modal'] [data-testid='confirm-modal-button']"
        wait.until(lambda d: clicked(d, By.CSS_SELECTOR, submit))
        time.sleep(1)
        driver.save_screenshot(str(shots / "signalled.png"))
    finally:
        driver.quit()
    return seen


def finished_page(ui: str, wid: str, shots: Path) -> str:
    """The text of a finished workflow's page (Selenium), read while no worker runs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1400"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    try:
        driver.get(f"{ui}/namespaces/default/workflows/{urllib.parse.quote(wid, safe='')}")
        wait = WebDriverWait(driver, 30)
        wait.until(
            lambda d: clicked(d, By.XPATH, "//*[(self::a or self::button or @role='tab') and normalize-space()='Memo']")
        )
        wait.until(lambda d: "tamma_details" in d.find_element(By.TAG_NAME, "body").text)
        driver.save_screenshot(str(shots / "finished.png"))
        return str(driver.find_element(By.TAG_NAME, "body").text)
    finally:
        driver.quit()


async def test_a_person_with_only_the_web_ui_approves_a_waiting_plan(
    with_ui: tuple[WorkflowEnvironment, int], settings: Settings, tmp_path: Path
) -> None:
    env, port = with_ui
    queue = "ui-approval"
    s = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"task_queue": queue})})
    platform, issue = make_demo(tmp_path / "repo", s.data_dir)
    service = TaskService(env.client, queue)
    policy = s.approval.model_copy(update={"auto_approve": False})
    opts = s.task_options(transcript=str(DEMO_TRANSCRIPT), policy=policy)
    shots = Path(os.environ.get("UI_SCREENSHOTS", str(tmp_path)))
    shots.mkdir(parents=True, exist_ok=True)
    async with running_worker(env.client, queue, build_activities(s), s):
        inp = IssueTaskInput(repo=platform.repo, issue_number=issue.number, options=opts)
        wid, _ = await service.start(inp, title=issue.title)
        await wait_for_status(service, wid, TaskStatus.AWAITING_APPROVAL, timeout_s=60)
        seen = await asyncio.to_thread(approve_in_browser, f"http://127.0.0.1:{port}", wid, shots)
        state = await asyncio.wait_for(service.result(wid), timeout=120)
    assert state.status == TaskStatus.MERGED, state.error
    assert state.approval is not None and state.approval.by == "web-ui-person"
    assert state.approval.reason == "read it in the Web UI"
    assert "RUNNING" in seen["page"] and wid in seen["page"]
    assert all((shots / f).stat().st_size > 10_000 for f in ("list.png", "waiting.png", "signalled.png"))
    # Finished, with no worker left: the task's final details are still on its page (its memo;
    # "current details" needs a worker to answer). They were empty before.
    memo = await env.client.get_workflow_handle(wid).describe()
    details = await memo.memo_value("tamma_details", type_hint=str)
    assert "`merged`" in details and "web-ui-person" in details
    page = await asyncio.to_thread(finished_page, f"http://127.0.0.1:{port}", wid, shots)
    assert "merged" in page and "web-ui-person" in page, page[-2000:]
