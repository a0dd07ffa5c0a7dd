"""The one page server of the tests: a Flask app on its own loopback origin.

``Server`` serves any Flask app with werkzeug on 127.0.0.1:0 in a thread: the
fake newspaper of the wallet's unit tests (tests/fakes/vendor.py) and the
browser tests' page. ``PageServer`` is that page: a newspaper-like page that
loads the bridge script and forwards article requests to a real vendor
(tests/browser). ``json_response`` is the newspapers' ``{"error", "detail"}``
answer.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import requests
from flask import Flask, Response, request
from werkzeug.serving import make_server

from ewallet_client.bridge import BRIDGE_SCRIPT

__all__ = ["PageServer", "Server", "json_response"]


def json_response(
    status: int, obj: dict[str, object], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(obj), status=status, headers=headers or {}, mimetype="application/json"
    )


class Server:
    """A Flask app served by werkzeug on 127.0.0.1:0 (a thread): a fake newspaper or a page."""

    def __init__(self, app: Flask, *, poll_interval_s: float = 0.02) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": poll_interval_s},
            daemon=True,
        )
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


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
    server: Server | None = None
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
        self.server = Server(self.app(), poll_interval_s=0.05)
        return self.origin

    @property
    def origin(self) -> str:
        assert self.server is not None, "start() the page server first"
        return self.server.origin

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop()
