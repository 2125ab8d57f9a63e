"""The status page in a real browser (Debian's headless chromium, driven by selenium through chromedriver) during a
real drill: the phase goes open -> halted -> protection (counting down) -> open, the runbook's steps appear, the
incident is listed. Screenshots of the page mid-drill are saved beside the drill's report (and, with
FAILOVER_SCREENSHOTS=DIR, there too: that is how README's picture is made)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

READ_PAGE = """
const card = document.querySelector('[data-engine="spot"]');
return {
  phase: card ? card.dataset.phase : null,
  countdown: (document.querySelector('.countdown') || {}).textContent || null,
  history: Array.from(document.querySelectorAll('[data-engine="spot"] .history li')).map(li => li.dataset.phase),
  steps: Array.from(document.querySelectorAll('#runbook [data-step]')).map(li => li.dataset.step),
  incidents: document.querySelectorAll('#incidents [data-incident]').length,
  stale: !document.getElementById('stale').hidden,
};
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"no {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,1400", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_url(drill: subprocess.Popen[str], deadline: float) -> str:
    assert drill.stdout is not None
    while time.monotonic() < deadline:
        line = drill.stdout.readline()
        if line.startswith("status page: "):
            return line.split(": ", 1)[1].strip()
        if not line and drill.poll() is not None:
            break
    raise AssertionError("the drill never printed its status page's URL")


def test_the_page_follows_a_drill_in_a_real_browser(browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "drill"
    out.mkdir()
    drill = subprocess.Popen([sys.executable, "-m", "orchestrator", "drill", "--scenario", "zone-outage",
                              "--speed", "120", "--open", "--out", str(out)], cwd=out, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[dict[str, Any]] = []
    shots: list[Path] = []
    try:
        browser.get(page_url(drill, time.monotonic() + 180))
        deadline = time.monotonic() + 300
        while drill.poll() is None and time.monotonic() < deadline:
            state = browser.execute_script(READ_PAGE)
            seen.append(state)
            if state["phase"] == "protection" and len([s for s in seen if s["phase"] == "protection"]) == 3:
                shots.append(out / "status-page.png")
                browser.save_screenshot(str(shots[-1]))
            time.sleep(0.2)
        assert drill.stdout is not None
        tail = drill.stdout.read()[-3000:]
        assert drill.wait(timeout=60) == 0, tail
    finally:
        if drill.poll() is None:
            drill.kill()
    phases = [state["phase"] for state in seen if state["phase"]]
    changes = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert changes[0] == "open" and "protection" in changes, changes
    assert changes[changes.index("protection"):][-1] == "open", changes  # reopened after the window
    # a halt shorter than a poll is still shown: the runbook's journal gives the page the phases it went through
    longest = max((state["history"] for state in seen), key=len)
    assert longest == ["halted", "protection", "open"], longest
    countdowns = {state["countdown"] for state in seen if state["phase"] == "protection" and state["countdown"]}
    assert len(countdowns) >= 3, f"the protection timer never counted down: {countdowns}"
    steps = max((state["steps"] for state in seen), key=len)
    assert {"halt", "fence_old_primary", "promote", "switch_traffic", "open_protection", "reopen"} <= set(steps)
    assert max(state["incidents"] for state in seen) == 1
    assert shots and shots[0].stat().st_size > 20_000
    keep = os.environ.get("FAILOVER_SCREENSHOTS")
    if keep:
        shutil.copy(shots[0], Path(keep) / "status-page.png")
