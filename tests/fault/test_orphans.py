"""A launcher killed with SIGKILL leaves no server behind holding its ports.

The vendor's gunicorn master and the demo's children ask the kernel
(PR_SET_PDEATHSIG) for SIGTERM when their launcher dies. These tests kill the
launcher for real and wait on each survivor with a pidfd (no polling, no sleep).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from broker.server import BrokerConfig, add_vendor, start_broker

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only"
)
NETPAY = [sys.executable, "-m", "netpay.cli.main"]
EXIT_TIMEOUT_S = 60


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids += [int(k) for k in text]
    return kids


def wait_gone(pid: int) -> None:
    """Block until ``pid`` exits (pidfd), or fail after EXIT_TIMEOUT_S."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], EXIT_TIMEOUT_S)
        assert ready, f"process {pid} outlived its launcher"
    finally:
        os.close(fd)


def port_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def ready_line(proc: subprocess.Popen[str]) -> dict[str, str]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"exited with {proc.wait()} before it was ready"
    info: dict[str, str] = json.loads(line)
    return info


def test_gunicorn_stops_when_the_vendor_is_killed(tmp_path: Path) -> None:
    broker = start_broker(BrokerConfig(data_dir=tmp_path / "b"))
    try:
        token = add_vendor(tmp_path / "b", "killed")
        proc = subprocess.Popen(
            [
                *NETPAY,
                "vendor",
                "serve",
                "--data-dir",
                str(tmp_path / "v"),
                "--broker",
                broker.grpc_address,
                f"--enroll={token}",
                "--workers",
                "2",
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            info = ready_line(proc)
            [master] = [
                k
                for k in children_of(proc.pid)
                if b"gunicorn" in Path(f"/proc/{k}/cmdline").read_bytes()
            ]
            workers = children_of(master)
            assert len(workers) == 2
            proc.kill()
            proc.wait()
            for pid in (master, *workers):
                wait_gone(pid)
            assert port_closed(info["web"])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
    finally:
        broker.stop()


def test_demo_children_stop_when_the_demo_is_killed(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*NETPAY, "demo", "--json", "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline() if proc.stdout else "{}")
        servers = children_of(proc.pid)
        assert len(servers) == 3  # broker + two vendors
        masters = [g for s in servers for g in children_of(s)]
        assert len(masters) == 2  # the vendors' gunicorn masters
        workers = [w for m in masters for w in children_of(m)]
        assert len(workers) == 4  # they hold the web sockets too
        proc.kill()
        proc.wait()
        for pid in (*servers, *masters, *workers):
            wait_gone(pid)
        assert all(port_closed(v["web"]) for v in info["vendors"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
