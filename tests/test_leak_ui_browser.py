"""The Leaks view as a person sees it: locust's web UI in a real (headless) Chromium.

A server with ``--unsafe-probe`` and a distributed locust web UI (master + 2 workers, the
locustfile's negative control) on 127.0.0.1; Selenium starts a swarm from the UI's form,
waits for the banner's leak counter to rise, reads the Leaks tab's rows, saves screenshots
under ``reports/`` (``leak-ui-running.png``, ``leak-ui-verdict.png``), stops the run from the UI
and waits for the verdict banner and for the server's live ctxlocal entries to reach 0.
Every process started here is stopped by its id.

Chromium and its driver are Debian's, installed by ``scripts/install-chromium.sh`` when
missing (root and apt, as on CI).  Chromium is started so that it never reaches for the
network (this machine has none): no background networking, component updates, sync or
first-run, a fresh profile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from loadtests.procs import free_port
from tests.support import ServerProcess, running_server

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
USERS = 20
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1600,1000")
UI_READY_TIMEOUT = 60.0
LEAKS_TIMEOUT = 45.0
VERDICT_TIMEOUT = 60.0

# The first run may install chromium (apt) inside the fixture: more than the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths; installs Debian's packages when missing."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "install-chromium.sh")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    browser, driver = result.stdout.split()
    return browser, driver


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server("--unsafe-probe", "--log-level", "warning", tmp_path=tmp_path,
                        workers=2) as server:
        yield server


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM locust's master (it stops its workers), then KILL what is left of its session."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(20)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the forked workers, never ours
    proc.wait()


@pytest.fixture
def locust_ui(server: ServerProcess, tmp_path: Path) -> Iterator[str]:
    """A distributed locust web UI on 127.0.0.1 (negative control); yields its URL."""
    port = free_port()
    log_path = tmp_path / "locust.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
             "--web-host", "127.0.0.1", "--web-port", str(port), "--host", server.url,
             "--processes", "2", "--expect-leaks", "--users", str(USERS),
             "--spawn-rate", str(USERS), "--html", str(tmp_path / "ui.html")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)
        print(log_path.read_text(errors="replace")[-3000:])


@pytest.fixture
def browser(chromium: tuple[str, str], tmp_path: Path) -> Iterator[WebDriver]:
    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver and the browser it started


def open_when_up(driver: WebDriver, url: str) -> None:
    """Load the UI, retrying while locust is still starting (connection refused)."""
    deadline = time.monotonic() + UI_READY_TIMEOUT
    while True:
        try:
            driver.get(url)
            if driver.find_elements(By.ID, "leak-banner"):
                return
        except WebDriverException:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"no leak banner at {url}: {driver.page_source[:2000]}")
        time.sleep(0.5)


def wait_for_workers(url: str, count: int) -> None:
    """A swarm started before the workers connected would run on fewer of them."""
    deadline = time.monotonic() + UI_READY_TIMEOUT
    while time.monotonic() < deadline:
        with suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{url}/stats/requests", timeout=5) as response:
                if json.load(response).get("worker_count") == count:
                    return
        time.sleep(0.5)
    raise AssertionError(f"{count} locust workers did not connect to the master")


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def number(text: str) -> int:
    return int(text.replace(",", "")) if text.replace(",", "").isdigit() else -1


def click_button(driver: WebDriver, label: str) -> None:
    button = WebDriverWait(driver, 30).until(lambda d: next(
        (b for b in d.find_elements(By.TAG_NAME, "button")
         if b.text.strip().lower() == label.lower() and b.is_enabled()), None))
    button.click()


def leak_rows(driver: WebDriver) -> list[list[str]]:
    """The Leaks tab's table: one list of cell texts per row."""
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, "table tbody tr")]


def test_the_leaks_view_counts_groups_and_judges_a_leaking_run(
        browser: WebDriver, locust_ui: str) -> None:
    REPORTS.mkdir(exist_ok=True)
    open_when_up(browser, locust_ui)
    assert text_of(browser, "leak-verdict").startswith("No run yet")
    wait_for_workers(locust_ui, 2)
    click_button(browser, "Start")

    WebDriverWait(browser, LEAKS_TIMEOUT, poll_frequency=0.5).until(
        lambda d: number(text_of(d, "leak-count")) > 100)
    first = number(text_of(browser, "leak-count"))
    WebDriverWait(browser, LEAKS_TIMEOUT, poll_frequency=0.5).until(
        lambda d: number(text_of(d, "leak-count")) > first)  # still rising: live, not a snapshot
    assert browser.find_element(By.ID, "leak-banner").get_attribute("data-state") == "running"
    live = text_of(browser, "leak-live")
    assert number(live.split(" ")[0]) >= 0, live  # a reading of the server's /metrics

    click_button(browser, "Leaks")
    WebDriverWait(browser, 30, poll_frequency=0.5).until(lambda d: leak_rows(d))
    rows = leak_rows(browser)
    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "table thead th")]
    assert headers[:3] == ["Request", "Leak", "# leaks"], headers
    assert 1 <= len(rows) <= 5, rows  # grouped by kind: a handful of rows
    for request, leak, count, *_rest, example in rows:
        assert request == "/unsafe/probe/[token]"
        assert leak.startswith("LEAK ") and "token" not in leak, leak
        assert number(count) > 0
        assert example.startswith("token ") and len(example.split()[1]) == 33, example
    browser.save_screenshot(str(REPORTS / "leak-ui-running.png"))

    click_button(browser, "Stop")
    WebDriverWait(browser, VERDICT_TIMEOUT, poll_frequency=0.5).until(
        lambda d: d.find_element(By.ID, "leak-banner").get_attribute("data-state") == "pass")
    verdict = text_of(browser, "leak-verdict")
    assert verdict.startswith("PASS (negative control): "), verdict
    # Once no request runs, the server holds no context at all: anything else is a leak.
    WebDriverWait(browser, 20, poll_frequency=0.5).until(
        lambda d: text_of(d, "leak-live") == "0")
    browser.save_screenshot(str(REPORTS / "leak-ui-verdict.png"))
