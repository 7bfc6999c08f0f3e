"""Helpers for the test suite and ``measure/`` scripts (no test imports another's helpers).

Today: headless Chromium for the browser checks (the rendered book, the live session). Selenium and
Chromium are optional: the ``test`` extra installs Selenium, Debian's ``chromium`` and
``chromium-driver`` the browser (``make browser-deps``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

#: Headless, quiet, and the network off except the local server: every other host fails to resolve.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
#: How to get the browser where it is missing.
CHROMIUM_HINT = ("headless browser checks need Chromium and chromedriver "
                 "(Debian: apt-get install -y chromium chromium-driver)")


def chromium_paths() -> tuple[str, str] | None:
    """``(browser, chromedriver)`` found on ``PATH``, or ``None`` when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(profile_dir: Path, page_load_timeout_s: float = 60.0):
    """A Selenium-driven headless Chromium with :data:`CHROMIUM_FLAGS`, logging the console and the network.

    Args:
        profile_dir: an empty folder for the browser profile.
        page_load_timeout_s: how long a page may take to load.

    Raises:
        RuntimeError: Chromium or chromedriver is missing (the message says how to install them).
        ImportError: Selenium is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(CHROMIUM_HINT)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(paths[1]), options=options)
    drv.set_page_load_timeout(page_load_timeout_s)
    return drv


def requests_elsewhere(driver) -> list[str]:
    """URLs the pages opened so far asked of any host other than 127.0.0.1 (drains the performance log).

    Chromium's own background probes carry no document of ours and are left out.
    """
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] != "Network.requestWillBeSent":
            continue
        params = msg["params"]
        url, document = params["request"]["url"], params.get("documentURL", "")
        if not document.startswith("http://127.0.0.1"):
            continue
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1":
            continue
        out.append(url)
    return out
