"""netpay.webserver: the in-process web listener."""

from __future__ import annotations

import logging

import pytest
import requests
from flask import Flask

from netpay.webserver import InProcessWebServer, bind_listen_socket, socket_origin


def test_access_log_lines_carry_no_query_string(caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("t")

    @app.get("/netpay/wallet/return")
    def back() -> str:
        return "ok"

    sock = bind_listen_socket("127.0.0.1:0", backlog=8)
    origin = socket_origin(sock)
    server = InProcessWebServer(sock, app, name="test-web")
    sock.close()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            resp = requests.get(origin + "/netpay/wallet/return?netpay_code=SECRET123", timeout=10)
        assert resp.status_code == 200
    finally:
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("/netpay/wallet/return" in line and "200" in line for line in lines), lines
    assert not any("SECRET123" in line for line in lines)
