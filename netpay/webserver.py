"""Web listeners shared by the broker portal and the vendor site.

The socket is bound by the server process itself (port 0 allowed), so the
address is known before anything serves on it and a request that arrives
early waits in the backlog; an in-process werkzeug server, or gunicorn
through ``fd://``, then serves on it.
"""

from __future__ import annotations

import socket
import threading

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from netpay.errors import InvalidArgument
from netpay.transport.server import split_host_port

__all__ = ["InProcessWebServer", "bind_listen_socket", "socket_origin"]


def bind_listen_socket(address: str, *, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a bind failure is InvalidArgument."""
    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise InvalidArgument(f"could not bind the web address {address}: {exc}") from exc
    return sock


def socket_origin(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _NoQueryLogHandler(WSGIRequestHandler):
    """Access log lines without the query string: it may carry a one-time code
    (``netpay_code``) or other secrets, which never go to a log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)


class InProcessWebServer:
    """``app`` on a threaded werkzeug server in this process, on a bound socket.

    The server holds its own copy of the descriptor: the caller may close ``sock``.
    """

    def __init__(self, sock: socket.socket, app: Flask, *, name: str) -> None:
        host, port = sock.getsockname()[:2]
        self._server = make_server(
            host, port, app, threaded=True, fd=sock.fileno(), request_handler=_NoQueryLogHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)
