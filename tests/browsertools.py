"""A real browser for the console's tests: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (no browser download), axe-core (npm) run in each page, and a screenshot of
each page kept as a test artefact.

Without /usr/bin/chromium the browser tests are skipped, except under CI (`CI` set), where they fail:
CI must drive a real browser (.ci/run installs Debian's chromium and chromium-driver).
Screenshots go to $CMS_POLICY_ARTEFACTS/console-screenshots, else build/console-screenshots.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.2 A and AA, the GOV.UK Service Standard's bar, plus axe's best practices (landmarks, headings).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
# The flags a sandboxed, offline machine needs: no GPU, no sandbox (root in CI), no calls home.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def artefacts() -> Path:
    base = Path(os.environ["CMS_POLICY_ARTEFACTS"]) if os.environ.get("CMS_POLICY_ARTEFACTS") else ROOT / "build"
    folder = base / "console-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_chromium(tmp_path: Path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER, AXE) if not p.exists()]
    if missing:
        why = f"browser tests need {', '.join(missing)} (Debian's chromium and chromium-driver; npm ci for axe-core)"
        if in_ci():
            pytest.fail(f"CI must run the browser tests: {why}", pytrace=False)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


def click_and_wait(driver, element) -> None:
    """Click a button or link that loads a new page, and wait until that page has replaced this one
    (a click returns before the navigation ends)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(old))


def axe_violations(driver) -> list[dict]:
    """axe-core's violations in the current page (injected through WebDriver, which the page's CSP
    does not govern; the page itself runs no script)."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe-error', help: String(e), nodes: []}]));", AXE_TAGS)


def check_page(driver, name: str) -> None:
    """Screenshot the whole page as `<name>.png` and assert that axe finds nothing."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 100, 12000)))
    driver.save_screenshot(str(artefacts() / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"))
    driver.set_window_size(1280, 900)
    violations = axe_violations(driver)
    assert not violations, f"axe found in {name} ({driver.current_url}):\n" + json.dumps(violations, indent=1)
