"""A headless Chromium driven by selenium, for the benchmark and the browser tests.

Uses Debian's `chromium` and `chromium-driver` packages (/usr/bin/chromium, /usr/bin/chromedriver);
selenium never downloads a browser here.
"""

from __future__ import annotations

import shutil
from typing import Any

from pipeline.core.errors import ConfigError

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MISSING = ("headless Chromium is not installed: apt-get install -y chromium chromium-driver "
           "(and pip install selenium)")


def check_chromium() -> str:
    """The chromedriver's path, once selenium and Debian's Chromium are known to be there; ConfigError
    naming the install command otherwise (a pre-start check for whatever will drive the page)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING) from None
    driver_path = shutil.which("chromedriver") or CHROMEDRIVER
    if not shutil.which(driver_path):
        raise ConfigError(MISSING)
    return driver_path


def headless_chromium(width: int = 1440, height: int = 900) -> Any:
    """A selenium WebDriver on a fresh headless Chromium profile; ConfigError when not installed."""
    driver_path = check_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver_path))
