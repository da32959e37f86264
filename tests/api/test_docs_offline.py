"""The API docs work on a machine with no internet: /docs and /redoc used to be blank offline
(their scripts came from a CDN), and the OpenAPI document declared no security scheme, so
Swagger UI had no way to take a token. In headless Chromium with every host but 127.0.0.1
unresolvable: the page renders, a token is entered with "Authorize", and an authorised call
answers 200; ReDoc renders too; nothing was asked of any other host.

Needs chromium and chromedriver (`.ci/observability-tools.sh`); skipped where they are missing,
except in CI (OBSERVABILITY_TEST_REQUIRE=1)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from typing import Any

import httpx
import pytest

from tamma.config import Settings
from tests.api.conftest import running_api, token

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
REQUIRED = os.environ.get("OBSERVABILITY_TEST_REQUIRE") == "1"
pytestmark = [
    pytest.mark.prometheus,  # the CI stage that installs the browser (.ci/observability-tools.sh)
    pytest.mark.skipif(not (CHROMIUM and DRIVER) and not REQUIRED, reason="chromium/chromedriver are not installed"),
]


async def test_the_openapi_document_declares_the_bearer_scheme(api_settings: Settings) -> None:
    with running_api(api_settings) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            spec = (await http.get("/openapi.json")).json()
            docs = (await http.get("/docs")).text
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a JWT from `tamma token create --role viewer|operator|admin`",
    }
    listing = spec["paths"]["/api/v1/tasks"]["get"]
    assert listing["security"] == [{"HTTPBearer": []}]
    assert "cdn" not in docs.lower() and "/docs-assets/swagger-ui-bundle.js" in docs


def _browser(url: str, bearer: str) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
        # offline but for this machine: any other host name fails to resolve (a CDN included)
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    seen: dict[str, Any] = {}
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(f"{url}/docs")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button.authorize"))
        driver.find_element(By.CSS_SELECTOR, "button.authorize").click()
        field = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".modal-ux input"))
        field.send_keys(bearer)
        driver.find_element(By.CSS_SELECTOR, ".modal-ux button.authorize").click()
        driver.find_element(By.CSS_SELECTOR, ".modal-ux button.btn-done").click()
        block = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#operations-tasks-list_tasks_api_v1_tasks_get"))
        block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(lambda d: block.find_element(By.CSS_SELECTOR, "button.try-out__btn")).click()
        wait.until(lambda d: block.find_element(By.CSS_SELECTOR, "button.execute")).click()
        cell = wait.until(
            lambda d: block.find_element(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status")
        )
        seen["status"] = cell.text.strip()
        seen["body"] = block.find_element(
            By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_description"
        ).text
        driver.get(f"{url}/redoc")
        wait.until(lambda d: "List tasks" in d.find_element(By.TAG_NAME, "body").text)
        seen["redoc"] = driver.find_element(By.TAG_NAME, "body").text
        asked: dict[str, str] = {}
        blocked: set[str] = set()  # stopped by the pages' Content-Security-Policy: never sent
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.requestWillBeSent":
                asked[params["requestId"]] = httpx.URL(params["request"]["url"]).host
            elif message.get("method") == "Network.loadingFailed" and params.get("blockedReason") == "csp":
                blocked.add(params["requestId"])
        seen["hosts"] = {host for rid, host in asked.items() if rid not in blocked}
        seen["blocked"] = {host for rid, host in asked.items() if rid in blocked}
    finally:
        driver.quit()
    return seen


async def test_swagger_ui_and_redoc_work_offline_with_a_token(api_settings: Settings) -> None:
    with running_api(api_settings) as url:
        seen = await asyncio.to_thread(_browser, url, token(api_settings, "viewer"))
    assert seen["status"] == "200", seen
    assert '"tasks"' in seen["body"]
    assert "Tamma" in seen["redoc"] and "List tasks" in seen["redoc"]
    assert seen["hosts"] <= {"127.0.0.1", ""}, seen["hosts"]  # nothing was asked of anyone else
    assert seen["blocked"] <= {"cdn.redoc.ly"}  # ReDoc's logo, refused by the page's policy
