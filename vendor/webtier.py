"""The vendor's web tier: the newspaper site served by gunicorn workers (a
subprocess on the already bound socket) or, with ``--workers 0``, by an
in-process werkzeug server (tests)."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from netpay.errors import Unavailable
from netpay.ready import child_env
from netpay.transport.server import split_host_port
from netpay.webserver import InProcessWebServer
from vendor.wsgi import CONFIG_ENV

__all__ = ["WebTier", "spawn_gunicorn", "wait_web_ready"]

log = logging.getLogger("vendor.server")

_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_GUNICORN_THREADS = 4


class WebTier:
    """The web site: a gunicorn subprocess or an in-process werkzeug server."""

    def __init__(
        self, process: subprocess.Popen[bytes] | None, server: InProcessWebServer | None
    ) -> None:
        self._process = process
        self._server = server

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise Unavailable(f"gunicorn exited with status {self._process.returncode}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(_STOP_TIMEOUT_S)
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("gunicorn did not stop in time; killing it")
                self._process.kill()
                self._process.wait()


def spawn_gunicorn(sock: socket.socket, workers: int, config_path: Path) -> subprocess.Popen[bytes]:
    """Gunicorn serving ``vendor.wsgi:create_app_from_env()`` on ``sock``."""
    fd = sock.fileno()
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"fd://{fd}",
        "--workers",
        str(workers),
        "--threads",
        str(_GUNICORN_THREADS),
        "--graceful-timeout",
        "10",
        "--log-level",
        "warning",
        "--config",
        "python:vendor.gunicorn_conf",
    ]
    major_minor = tuple(int(p) for p in version("gunicorn").split(".")[:2])
    if major_minor >= (25, 1):
        cmd.append("--no-control-socket")  # one per machine otherwise: vendors would collide
    cmd.append("vendor.wsgi:create_app_from_env()")
    env = child_env({**os.environ, CONFIG_ENV: str(config_path)})
    return subprocess.Popen(cmd, pass_fds=(fd,), env=env, stdin=subprocess.DEVNULL)


def wait_web_ready(web_url: str, web: WebTier) -> None:
    """One GET /healthz: the socket already listens, so it waits for a worker."""
    host, port = split_host_port(web_url.removeprefix("http://"))
    conn = http.client.HTTPConnection(host, port, timeout=_READY_TIMEOUT_S)
    try:
        conn.request("GET", "/healthz", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    except OSError as exc:
        web.check_alive()
        raise Unavailable(f"the web tier did not answer: {exc}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise Unavailable(f"the web tier answered {resp.status}: {body[:200]!r}")
