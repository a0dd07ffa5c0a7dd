"""Headless Chromium from Debian's packages, driven by Playwright for Python.

Never `playwright install`: the browser is Debian's `/usr/bin/chromium`
(`.ci/run` installs `chromium` and `chromium-driver`). Outside CI the tests
skip when it is missing; in CI (CI=true) a missing browser is a failure.
Screenshots go to `$NETPAY_TEST_OUTPUT/browser/` (default `test-output/`).

``page_server`` (with ``PageServer``) is a test page on its own loopback origin
that loads the bridge script and forwards article requests to a real vendor
(test_wallet_bridge.py, test_wallet_windows.py).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from werkzeug.serving import make_server

from ewallet_client.bridge import BRIDGE_SCRIPT

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


@dataclass
class PageServer:
    """A newspaper-like page on its own origin (127.0.0.1:0), with the vendor behind it.

    Serves ``page_html`` at ``/page.html`` and the bridge library at
    ``/netpay-bridge.js``, and forwards ``GET /articles/*`` (and, with
    ``forward_netpay``, ``POST /netpay/*``) to the vendor at ``target``: the
    request headers named in ``up`` go up, the answer headers named in
    ``down`` come back (every value of a repeated one, e.g. ``Set-Cookie``).
    ``seen`` keeps the headers of every forwarded request.
    """

    page_html: str
    up: tuple[str, ...] = ("Accept", "Authorization")
    down: tuple[str, ...] = (
        "WWW-Authenticate",
        "NetPay-Receipt",
        "NetPay-Balance",
        "Cache-Control",
        "Vary",
    )
    forward_netpay: bool = False
    target: str = ""
    server: Any = None
    thread: threading.Thread | None = None
    seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def forwarded(self) -> list[str]:
        """The ``Authorization`` header of every forwarded request ("" without one)."""
        return [sent.get("Authorization", "") for sent in self.seen]

    def forward(self, path: str) -> Response:
        assert self.target, "no vendor behind the page server yet"
        headers = {k: v for k, v in request.headers.items() if k in self.up}
        self.seen.append(headers)
        with requests.Session() as s:
            upstream = s.request(
                request.method,
                f"{self.target}/{path}",
                headers=headers,
                timeout=10,
                allow_redirects=False,
            )
        out = Response(upstream.content, status=upstream.status_code)
        out.headers["Content-Type"] = upstream.headers.get("Content-Type", "text/plain")
        for name in self.down:
            for value in upstream.raw.headers.getlist(name):
                out.headers.add(name, value)
        return out

    def app(self) -> Flask:
        app = Flask("browser_test_page")

        @app.get("/page.html")
        def page() -> Response:
            return Response(self.page_html, mimetype="text/html")

        @app.get("/netpay-bridge.js")
        def script() -> Response:
            return Response(BRIDGE_SCRIPT.read_text(), mimetype="text/javascript")

        @app.get("/articles/<path:rest>")
        def article(rest: str) -> Response:
            return self.forward(f"articles/{rest}")

        if self.forward_netpay:

            @app.post("/netpay/<path:rest>")
            def netpay(rest: str) -> Response:
                return self.forward(f"netpay/{rest}")

        return app

    def start(self) -> str:
        self.server = make_server("127.0.0.1", 0, self.app(), threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self.origin

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        assert self.thread is not None
        self.thread.join(10)


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
