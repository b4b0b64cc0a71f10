"""The admin page in headless Chromium (Debian's chromium + chromium-driver) on a real runtime."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from runtime.app import Runtime
from tests.conftest import ROOT, MakeDockerRuntime

pytestmark = pytest.mark.docker

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = ROOT / "docs" / "admin-page.png"
"""Rewritten by the test only when ``UPDATE_SCREENSHOT=1``: a test run leaves the tracked files as they were."""
API = "/api/v1/agent/workspaces"
WAIT_S = 60

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "the admin page's browser test needs Debian's chromium and chromium-driver "
        "(`make test` installs them when it runs as root on Debian)",
        allow_module_level=True,
    )


@pytest.fixture
def runtime(make_docker_runtime: MakeDockerRuntime) -> Runtime:
    # Sampled every 2 s, so the usage bars fill while the page is open.
    return make_docker_runtime(http_addr="127.0.0.1:0", sample_interval_s=2.0)


@pytest.fixture
def api(runtime: Runtime) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {runtime.token}"}
    with httpx.Client(base_url=f"http://{runtime.http_address}", headers=headers, timeout=120) as client:
        yield client


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container: Chromium's own sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT_S)


def row(workspace_id: str) -> tuple[str, str]:
    return (By.CSS_SELECTOR, f'#workspaces tr[data-id="{workspace_id}"]')


def sign_in(driver: WebDriver, runtime: Runtime, token: str) -> None:
    driver.get(f"http://{runtime.http_address}/")
    field = wait(driver).until(expected_conditions.visibility_of_element_located((By.ID, "token")))
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "open").click()


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_a_wrong_token_is_refused_and_nothing_is_kept(runtime: Runtime, browser: WebDriver) -> None:
    sign_in(browser, runtime, "not-the-token-not-the-token")
    refusal = wait(browser).until(lambda driver: driver.find_element(By.ID, "sign-in-error").text)
    assert "token" in refusal
    assert browser.find_element(By.ID, "dashboard").get_attribute("hidden") is not None
    assert browser.execute_script("return sessionStorage.length + localStorage.length") == 0


def test_the_admin_page_shows_a_workspace_live_and_destroys_it_with_its_button(
    runtime: Runtime, api: httpx.Client, browser: WebDriver, tmp_path: Path
) -> None:
    sign_in(browser, runtime, runtime.token)
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "live"), "live"))
    assert browser.execute_script("return sessionStorage.getItem('agent-workspaces.token')") == runtime.token
    assert browser.execute_script("return localStorage.length") == 0
    providers = browser.find_element(By.CSS_SELECTOR, '#providers tr[data-name="gvisor"]')
    assert "healthy" in providers.text

    # Created through the API while the page is open: it appears from the event stream.
    created = api.post(API, json={"labels": {"team": "docs"}, "memory": "512M"}).json()
    workspace_id = created["id"]
    try:
        shown = wait(browser).until(expected_conditions.visibility_of_element_located(row(workspace_id)))
        wait(browser).until(lambda _: "ready" in shown.find_element(By.CSS_SELECTOR, "td.state").text)
        assert "gvisor (runsc)" in shown.find_element(By.CSS_SELECTOR, "td.provider").text
        events = browser.find_element(By.ID, "events").text
        assert f"{workspace_id} creating" in events
        assert f"{workspace_id} ready" in events

        # Extend to 4 h from now with the row's own controls.
        shown.find_element(By.CSS_SELECTOR, "select.ttl option[value='14400']").click()
        clicked = time.time()
        shown.find_element(By.CSS_SELECTOR, "button.extend").click()
        wait(browser).until(lambda _: "in 4 h" in shown.find_element(By.CSS_SELECTOR, "td.expires").text)
        expires_at = api.get(f"{API}/{workspace_id}").json()["expires_at"]
        assert clicked + 14400 - 60 < expires_at < time.time() + 14400 + 60

        # Usage comes from stats, which the page refreshes: the memory bar fills once sampled.
        wait(browser).until(lambda _: "MiB" in shown.find_element(By.CSS_SELECTOR, "td.memory").text)
        assert browser.save_screenshot(
            str(SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "page.png")
        )

        destroy = shown.find_element(By.CSS_SELECTOR, "button.destroy")
        destroy.click()  # arms it
        assert destroy.text == "Confirm"
        assert api.get(f"{API}/{workspace_id}").json()["state"] == "ready"
        destroy.click()
        wait(browser).until(expected_conditions.invisibility_of_element_located(row(workspace_id)))
    finally:
        api.delete(f"{API}/{workspace_id}")  # idempotent: a no-op when the button did it
    assert api.get(f"{API}/{workspace_id}").json()["state"] == "destroyed"
    assert f"{workspace_id} destroyed" in browser.find_element(By.ID, "events").text
    assert console_errors(browser) == []
