"""The first visitor of a freshly started server sees the app's own navigation from the first paint.

Streamlit starts every new server in its old `pages/` folder mode until some script run has
called `st.navigation`; in that mode it used to show a lowercase "app / draw / mistakes /
train" menu for seconds before the app's own menu appeared. These tests start
their own server (the session's `app_server` has been visited already, so it is past that
moment), record the navigation from the moment the app's DOM appears until the script has
finished, and check every state it went through: never that old menu, never a page outside
app.py's frame, and as the first menu Train, Mistakes, Draw, Inside (its entries are elements of their
own, so the browser may draw them a moment apart: the first of them alone, in order, for at
most 250 ms, counts as that menu being drawn).

Two recorders watch the page: one inside it (a MutationObserver plus a 50 ms timer, installed
before Streamlit's own code runs, so a menu shown for a single frame is caught too), and the
test itself, which reads the page every 50 ms while it waits.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, running_server

pytestmark = pytest.mark.e2e

APP_NAV = ["Train", "Mistakes", "Draw", "Inside"]
OLD_MODE_NAV = {"app", "draw", "inside", "mistakes", "train"}  # page names Streamlit makes from file names

# The navigation now on screen, as one snapshot: the link texts (icons left out) in the sidebar and
# in a top navigation bar, whether a page heading is shown, and the script's state.
SNAPSHOT = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return null;
  const label = (link) => {
    const copy = link.cloneNode(true);
    copy.querySelectorAll('[data-testid^="stIcon"]').forEach((icon) => icon.remove());
    return copy.textContent.trim();
  };
  const links = Array.from(document.querySelectorAll(
    '[data-testid="stSidebar"] a, a[data-testid^="stTopNav"], [data-testid^="stTopNav"] a'));
  const view = document.querySelector('[data-testid="stAppViewContainer"]');
  return {
    t: Math.round(performance.now()),
    nav: Array.from(new Set(links)).map(label).filter((text) => text),
    heading: Array.from(document.querySelectorAll('[data-testid="stMain"] h1')).map((h) => h.textContent.trim()),
    state: app.getAttribute('data-test-script-state'),
    layout: view ? view.getAttribute('data-layout') : null,
    sidebarText: (document.querySelector('[data-testid="stSidebar"]') || {}).innerText || '',
  };
}"""

RECORDER = """(() => {
  const snapshot = SNAPSHOT;
  const samples = [];
  window.__firstPaintSamples = samples;
  let last = '';
  const record = () => {
    const now = snapshot();
    if (!now) return;
    const key = JSON.stringify([now.nav, now.heading, now.state, now.layout, now.sidebarText.length > 0]);
    if (key !== last) { last = key; samples.push(now); }
  };
  new MutationObserver(record).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
  setInterval(record, 50);
})();""".replace("SNAPSHOT", SNAPSHOT, 1)


def record_first_visit(browser, url: str, heading: str, shot: Path) -> list[dict]:
    """Open `url` as the server's first visitor; every navigation state until the page is done."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(RECORDER)
    tab = context.new_page()
    polled: list[dict] = []
    try:
        tab.goto(url, wait_until="commit")
        deadline = time.monotonic() + 120  # a cold start imports PyTorch on two slow cores
        done_since = None
        while time.monotonic() < deadline:
            now = tab.evaluate(SNAPSHOT)
            if now:
                polled.append(now)
                done = now["state"] == "notRunning" and heading in now["heading"] and now["nav"]
                done_since = (done_since or time.monotonic()) if done else None
                if done_since and time.monotonic() - done_since > 0.5:  # settled, not between two runs
                    break
            tab.wait_for_timeout(50)
        else:
            tab.screenshot(path=str(shot))
            pytest.fail(f"the page never finished with the heading {heading!r}; last state {polled[-1:]}, see {shot}")
        recorded = tab.evaluate("() => window.__firstPaintSamples || []")
    finally:
        context.close()
    return sorted(recorded + polled, key=lambda sample: sample["t"])


def check_navigation(samples: list[dict], where: str) -> None:
    assert samples, f"{where}: the app's DOM never appeared"
    old = [sample for sample in samples if OLD_MODE_NAV & set(sample["nav"])]
    assert not old, (f"{where}: Streamlit's pages-folder navigation {old[0]['nav']} was on screen from "
                     f"{old[0]['t'] - samples[0]['t']} ms to {old[-1]['t'] - samples[0]['t']} ms after the app appeared")
    shown = [sample for sample in samples if sample["nav"]]
    assert shown, f"{where}: no navigation was ever shown"
    # Each menu entry is an element of its own, so the browser may draw them one after the other:
    # a first part of the menu, in its order, is the menu being drawn; anything else is another menu.
    other = [sample["nav"] for sample in shown if sample["nav"] != APP_NAV[: len(sample["nav"])]]
    assert not other, f"{where}: a navigation other than {APP_NAV} was shown: {other[0]}"
    whole = next(sample for sample in shown if sample["nav"] == APP_NAV)
    assert whole["t"] - shown[0]["t"] <= 250, (
        f"{where}: the first navigation shown was {shown[0]['nav']}, and all of {APP_NAV} only "
        f"{whole['t'] - shown[0]['t']} ms later")
    assert all(sample["nav"] == APP_NAV for sample in shown if sample["t"] >= whole["t"]), f"{where}: the navigation changed"
    # app.py sets the wide layout; a page run on its own (Streamlit's pages-folder mode) is centred.
    bare = [sample for sample in samples if sample["heading"] and sample["layout"] != "wide"]
    assert not bare, f"{where}: the page {bare[0]['heading']} was shown without app.py's frame around it"
    final = samples[-1]
    assert final["layout"] == "wide", f"{where}: the page did not run in app.py's wide layout"
    assert "Device" in final["sidebarText"], f"{where}: the page did not run with app.py's sidebar"


@pytest.mark.parametrize("path, heading", [("", "Train"), ("draw", "Draw")], ids=["root", "draw"])
def test_first_visit_of_a_fresh_server_shows_only_the_apps_navigation(
    browser, e2e_data_dir, tmp_path, request, path, heading
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("[", "-").replace("]", "")
    log_path, shot = ARTIFACTS / f"{name}.log", ARTIFACTS / f"{name}.png"
    with running_server(e2e_data_dir, tmp_path / "runs", log_path) as url:
        samples = record_first_visit(browser, f"{url}/{path}", heading, shot)
    try:
        check_navigation(samples, f"first visit to /{path}")
    except AssertionError:
        print(f"\nE2E FAILURE ARTIFACTS: server log {log_path}")
        raise
