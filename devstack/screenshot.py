"""A PNG of an HTML page as headless Chromium renders it - to look at the audit report as people see it.

Optional: `make demo` takes the screenshot when a Chromium is installed (Debian: `apt-get install
chromium`) and says so when none is.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600, timeout: float = 60) -> bool:
    """Render `page` into `png`; True when a PNG was written. A fresh profile, no network, no GPU."""
    browser = find_browser()
    if browser is None:
        return False
    with tempfile.TemporaryDirectory(prefix="poolsync-chromium-") as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
             f"--window-size={width},{height}", f"--screenshot={png.resolve()}", page.resolve().as_uri()],
            capture_output=True, timeout=timeout, check=False,
        )
    return png.exists() and png.read_bytes()[:8] == PNG_MAGIC
