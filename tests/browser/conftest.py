"""Headless Chromium from Debian's packages, driven by Playwright for Python.

Never `playwright install`: the browser is Debian's `/usr/bin/chromium`
(`.ci/run` installs `chromium` and `chromium-driver`). Outside CI the tests
skip when it is missing; in CI (CI=true) a missing browser is a failure.
Screenshots go to `$NETPAY_TEST_OUTPUT/browser/` (default `test-output/`).

``page_server`` starts a ``PageServer`` (tests/fakes/pages.py, the one page
server the wallet's unit tests serve their fake newspaper with too): a test
page on its own loopback origin that loads the bridge script and forwards
article requests to a real vendor (test_wallet_bridge.py,
test_wallet_windows.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.pages import PageServer

CHROMIUM = os.environ.get("NETPAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _chromium_or_skip() -> str:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    out = Path(os.environ.get("NETPAY_TEST_OUTPUT", "test-output")) / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page_server() -> Iterator[Callable[..., PageServer]]:
    """``page_server(page_html, **options)``: a started PageServer, stopped after the test."""
    started: list[PageServer] = []

    def start(page_html: str, **options: Any) -> PageServer:
        server = PageServer(page_html, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
