"""Headless Chromium for the live view: the screenshot command and the browser test use it.

Debian's packages (`apt-get install chromium chromium-driver`: /usr/bin/chromium and
/usr/bin/chromedriver) driven by Selenium (the test extra); nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespaces for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers' /dev/shm is small
    "--no-first-run",
    # Chromium's own connections (updates, sync, field trials) are refused on a closed network,
    # and it waits on them: off.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def missing() -> str | None:
    """Why headless Chromium cannot be driven here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} not found (Debian package {package})"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (it is in the test extra: pip install -e '.[test]')"
    return None


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A Selenium WebDriver on headless Chromium with a new, empty profile and a page area of
    width x height pixels; quit afterwards."""
    # selenium is optional (the test extra): imported only here, once missing() has said it is there.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            # --window-size counts the window's frame too: the page area is set exactly here.
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            yield driver
        finally:
            driver.quit()


def wait_for(driver, script: str, timeout: float, every: float = 0.1):
    """Run `script` (JavaScript returning a value) until it returns something truthy; returns it.
    Raises TimeoutError with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > deadline:
            break
        time.sleep(every)
    if not value:
        raise TimeoutError(f"after {timeout:g} s, {script!r} gives {value!r}")
    return value
