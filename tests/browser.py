"""Headless Chromium for browser tests, shared by every test that opens a page (the
``chromium`` and ``page`` fixtures in conftest.py use it).

Playwright drives the system's Chromium (Debian's ``chromium`` package): Playwright's own
browser download cannot work on machines without access to its CDN. Set ``DLEXP_CHROMIUM`` to
use another binary. Without any Chromium the tests skip, saying so; one that is installed but
does not start fails them, as any broken dependency would.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
INSTALL = "apt-get install -y chromium chromium-driver"
VIEWPORT = {"width": 1280, "height": 900}
SAVED: list[Path] = []  # screenshots written this session, listed in pytest's summary


def chromium_path() -> str | None:
    """``$DLEXP_CHROMIUM``, else the first Chromium or Chrome on ``PATH``."""
    if given := os.environ.get("DLEXP_CHROMIUM"):
        return given if Path(given).is_file() else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@contextmanager
def launch_chromium() -> Iterator:
    """A headless Chromium (a Playwright ``Browser``); skips the test when there is none."""
    path = chromium_path()
    if path is None:
        where = (f"DLEXP_CHROMIUM={os.environ['DLEXP_CHROMIUM']} is not a file"
                 if os.environ.get("DLEXP_CHROMIUM") else "none on PATH")
        pytest.skip(f"no Chromium found ({where}): {INSTALL}, or set DLEXP_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$DLEXP_TEST_ARTIFACTS``, else a fresh temporary folder."""
    if given := os.environ.get("DLEXP_TEST_ARTIFACTS"):
        path = Path(given).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("artifacts")


def screenshot(page, path: Path) -> Path:
    """Save what the page shows now, and list it in the session's summary."""
    page.screenshot(path=str(path))
    SAVED.append(path)
    return path
