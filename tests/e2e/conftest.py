"""End-to-end fixtures: a real `streamlit run app.py` server and a real headless Chromium.

The browser is `E2E_BROWSER` (a path to a Chromium-like executable) when set, else
Playwright's own (`playwright install chromium`). With neither, the tests are skipped with
a message that says so; CI installs Debian's Chromium headless shell (`chromium-headless-shell`)
and sets E2E_BROWSER, so they run there.

Every server's log is written under `test-artifacts/e2e/`. On failure the tests on the shared tab
(`page`) and the run-history test save a screenshot there too and print one line with the paths
(`print_failure_artifacts`); the first-paint tests print their server's log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import real_data_dir, skip_or_fail, tiny_digits, write_idx

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


E2E_TRAIN, E2E_TEST = 20_000, 2_000  # images in the browser tests' data: what a page needs, not all of MNIST


@pytest.fixture(scope="session", autouse=True)
def shipped_model_copy(tmp_path_factory):
    """The servers use a copy of the shipped model (MNIST_DEFAULT_MODEL), in a folder of the session's
    own. A model's embedding map is stored beside it, and the browser tests build one on their own
    smaller test split: beside the copy, it neither replaces a developer's map of all of MNIST in the
    checkout's models/ folder nor meets another test session's."""
    copy = tmp_path_factory.mktemp("shipped-model") / "default.pt"
    shutil.copy2(ROOT / "models" / "default.pt", copy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNIST_DEFAULT_MODEL", str(copy))  # the servers inherit it (running_server)
        yield copy


@pytest.fixture(scope="session")
def e2e_data_dir(tmp_path_factory) -> Path:
    """Real MNIST digits when MNIST_DATA_DIR holds them, else synthetic ones, in MNIST's format:
    the first 20,000 training and 2,000 test images. Real digits keep the pages honest (the shipped
    model's mistakes, the map's clusters); fewer of them keep each evaluation and the map's build
    (t-SNE) to seconds, where all 10,000 test digits took a minute and a half of CPU on CI."""
    root = tmp_path_factory.mktemp("e2e-data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    real = real_data_dir()
    if real:
        from mnist_core.data import load_split  # checks the real files, then reads them

        for prefix, train, count in (("train", True, E2E_TRAIN), ("t10k", False, E2E_TEST)):
            images, labels = load_split("mnist", train, real)
            write_idx(raw, prefix, images[:count].numpy(), labels[:count].numpy().astype(np.uint8))
    else:
        write_idx(raw, "train", *tiny_digits(E2E_TRAIN, seed=3))
        write_idx(raw, "t10k", *tiny_digits(E2E_TEST, seed=4))
    return root


# The logs of the servers started (`running_server`) since the running test's `page` was set up:
# the servers the test started itself, named in the line that says where a failed test's
# artifacts are (`page`, `print_failure_artifacts`).
servers_started: list[Path] = []


def print_failure_artifacts(screenshot: Path | str, server_logs: list[Path]) -> None:
    """The one line a failed browser test prints: where its screenshot and server logs are
    (`screenshot`: its path, or why there is none)."""
    logs = ", ".join(str(log) for log in server_logs)
    print(f"\nE2E FAILURE ARTIFACTS: screenshot {screenshot} ; server log {logs}")


@contextlib.contextmanager
def running_server(data_dir: Path, runs_dir: Path, log_path: Path, hosted: bool = False, standby: bool = True):
    """`streamlit run app.py` on a free port, healthy and not yet visited by any browser; yields its URL.
    `hosted`: as a shared demo (MNIST_HOSTED=1). `standby=False`: no standby worker (for a test that
    starts no job, where it would only spend 3-4 CPU-seconds importing torch and reading MNIST)."""
    servers_started.append(log_path)
    port = _free_port()
    env = {**os.environ, "MNIST_DATA_DIR": str(data_dir), "MNIST_RUNS_DIR": str(runs_dir),
           "MNIST_HOSTED": "1" if hosted else "", "MNIST_STANDBY_WORKER": "1" if standby else "0"}  # on: as the app ships
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:  # the health check opens no session: the server stays unvisited
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"the Streamlit server did not start; see {log_path}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, e2e_data_dir):
    """A Streamlit server on a free port with an empty runs folder; yields (url, log path, runs folder)."""
    runs = tmp_path_factory.mktemp("e2e-runs")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "server.log"
    with running_server(e2e_data_dir, runs, log_path) as url:
        yield url, log_path, runs


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        skip_or_fail("Playwright for Python is not installed (pip install -r requirements-dev.txt)")
    executable = os.environ.get("E2E_BROWSER") or None
    if executable and not Path(executable).exists():
        skip_or_fail(f"E2E_BROWSER={executable} does not exist")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        except Error as error:
            skip_or_fail(f"no browser for the end-to-end tests: set E2E_BROWSER to a Chromium executable or run "
                         f"'playwright install chromium' ({str(error).splitlines()[0]})")
        yield launched
        launched.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.failed_in_call = report.failed


DESKTOP = {"width": 1400, "height": 1000}


@pytest.fixture(scope="session")
def desktop_context(browser):
    """The browser context whose one tab the tests taking `page` share (see `page`)."""
    context = browser.new_context(viewport=DESKTOP)
    yield context
    context.close()


@pytest.fixture
def page(desktop_context, app_server, request):
    """A desktop-sized tab, shared by the tests that take it: each starts on about:blank, with no
    cookies, storage or routes of the test before (a test that listens to the tab's events removes
    its listener itself). Why shared: a page in a new tab costs about 3 CPU-seconds in all, as the
    tab's new renderer process compiles Streamlit's scripts again; a navigation in an open tab costs
    about 1. A test that needs a browser of its own (another size, a second visitor, a recorder in
    every page) makes its own context."""
    url, log_path, _ = app_server
    tab = desktop_context.pages[0] if desktop_context.pages else desktop_context.new_page()
    tab.set_default_timeout(30_000)
    servers_started.clear()
    yield tab
    if getattr(request.node, "failed_in_call", False):
        shot: Path | str = ARTIFACTS / f"{request.node.name}.png"
        try:
            tab.screenshot(path=str(shot), full_page=True)
        except Exception as error:  # noqa: BLE001 - a tab too broken to photograph: the logs still say what happened
            shot = f"none (the tab could not be photographed: {str(error).splitlines()[0]})"
        print_failure_artifacts(shot, list(servers_started) or [log_path])  # the servers it started, else the shared one
    try:  # back to what a new tab would be; leaving the app ends its Streamlit session
        tab.unroute_all(behavior="ignoreErrors")
        tab.evaluate("() => { try { sessionStorage.clear(); localStorage.clear(); } catch (e) {} }")
        tab.goto("about:blank")
        tab.set_viewport_size(DESKTOP)
        desktop_context.clear_cookies()
    except Exception:  # noqa: BLE001 - a tab the test left broken: the next test gets a new one
        tab.close()


def open_page(tab, app_server, path: str = "") -> None:
    """Open a page of the app and wait until Streamlit has finished running its script."""
    tab.goto(f"{app_server[0]}/{path}")
    wait_idle(tab)


def wait_idle(tab, timeout_ms: int = 30_000) -> None:
    tab.wait_for_selector("[data-testid='stApp']", timeout=timeout_ms)
    # The script state, not only the status widget (which may not show yet): a check made right
    # after a click could otherwise read the previous run's elements.
    tab.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    tab.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout_ms,
    )
    tab.wait_for_timeout(300)


def assert_no_errors(tab) -> None:
    """No Streamlit exception box and no error alert on the page."""
    assert tab.locator("[data-testid='stException']").count() == 0, tab.locator("[data-testid='stException']").first.inner_text()
    errors = tab.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 0, errors.first.inner_text()
