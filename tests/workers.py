"""Which gunicorn worker holds a connection, and connections pinned to one worker.

Left alone, one gunicorn worker tends to win every ``accept()``; tests that must
have both workers serve (races between workers, concurrent clicks) read the
owner of each connection from ``/proc`` and steer new connections to a chosen
worker by stopping the others (SIGSTOP/SIGCONT) while it connects, with no
request in flight. Linux only.
"""

from __future__ import annotations

import http.client
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Workers"]

HTTP_TIMEOUT_S = 30.0


def _hex_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


@dataclass
class Workers:
    """The vendor's gunicorn workers, and which one holds a connection."""

    host: str
    port: int
    pids: list[int]

    def owner(self, conn: http.client.HTTPConnection) -> int | None:
        """The worker holding the server side of ``conn`` (None: closed meanwhile)."""
        assert conn.sock is not None, "not connected"
        client_port = conn.sock.getsockname()[1]
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if _hex_port(fields[1]) == self.port and _hex_port(fields[2]) == client_port:
                inode = fields[9]
        if inode is None:
            return None
        wanted = f"socket:[{inode}]"
        for pid in self.pids:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == wanted:
                        return pid
                except OSError:
                    continue  # closed while we looked
        return None

    def connect(self) -> http.client.HTTPConnection:
        """A new kept-alive connection, answered once (GET /healthz)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT_S)
        conn.request("GET", "/healthz", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        return conn

    def connection_to(self, worker: int) -> http.client.HTTPConnection:
        """A new connection accepted by ``worker``: the others are stopped while it
        connects (no request is in flight, so none is stopped inside a transaction)."""
        others = [pid for pid in self.pids if pid != worker]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(10):
                conn = self.connect()
                if self.owner(conn) == worker:
                    return conn
                conn.close()
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)
        pytest.fail(f"no connection reached worker {worker}")
