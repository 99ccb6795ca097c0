"""The console in a real headless Chromium: every part a reviewer or policy officer uses, each page
screenshotted (a test artefact) and checked by axe-core. The pages run no script: what the browser
does here, a user with no JavaScript does too."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.browsertools import check_page, start_chromium
from tests.consoletools import ServedConsole, grpc_target


@pytest.fixture(scope="module")
def site(console_service, console_reports):
    served = ServedConsole(grpc_target(console_service[0]), console_reports)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("browser"))
    yield driver
    driver.quit()


def test_the_start_page(site, browser):
    browser.get(site.url + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "CMS policy console"
    check_page(browser, "start")
