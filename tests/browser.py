"""A headless system Chromium driven by Selenium (Debian's chromium and chromium-driver), for
tests a user would do in a browser and for the dashboard's memory benchmark."""

from __future__ import annotations

import os
import tempfile
from typing import Any

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def chromium_missing() -> str | None:
    """Why no browser can be started here, or None."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return "chromium and chromium-driver are not installed (tests/install-servers.sh installs them)"
    return None


def chromium() -> Any:
    """A fresh headless Chromium with its own profile in ``driver._profile`` (remove it after
    ``driver.quit()``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="watchdog-chromium-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    driver._profile = profile  # type: ignore[attr-defined]  # removed by the caller
    return driver
