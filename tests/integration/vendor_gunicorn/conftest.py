"""A real broker and a real vendor under gunicorn with 2 web workers, as child processes.

Both are started through the ``netpay`` command (``.venv/bin/netpay broker
serve``, ``netpay broker add-vendor``, ``netpay vendor serve --workers 2``);
each prints its JSON ready line on stdout, read with a selector and a
deadline (no sleeping). The broker serves gRPC and its portal on 127.0.0.1,
the newspaper its web site on 127.0.0.2 (its own host: cookies are not
separated by port). At the end both get SIGTERM and must exit 0, the
gunicorn master and workers with them, the ports closed, and nothing
logged a traceback.

Which worker served a request: the server side of a kept-alive TCP
connection belongs to the worker that accepted it, so the test looks the
connection up in ``/proc/net/tcp`` and the socket inode among the workers'
``/proc/<pid>/fd`` right after each answer. Left alone, one worker tends to
win every ``accept()``; ``Workers.connection_to(worker)`` steers a new
connection to a chosen worker by stopping the other one (SIGSTOP) while it
connects, then resumes it (SIGCONT) — with no request in flight, so no
worker is stopped inside a transaction.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import select
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
import requests

from netpay.envelope import open_envelope
from netpay.transport.auth import bearer_metadata
from netpay.transport.server import channel_options
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from tests.workers import Workers

NETPAY = str(Path(sys.executable).with_name("netpay"))  # the installed console script
READY_TIMEOUT_S = 60
EXIT_TIMEOUT_S = 60
HTTP_TIMEOUT_S = 30
VENDOR_ID = "gunicorn-news"
VENDOR_HOST = "127.0.0.2"
READER = "gus.reader"
READER_PASSWORD = "a reader passphrase for gunicorn"
WALLET_PASSWORD = "server wallet pass phrase 2w"
DASHBOARD_PASSWORD = "a dashboard password for two workers"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Server:
    """One ``netpay ... serve`` child: its ready line, its stderr in a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._err: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            [NETPAY, *args],
            stdout=subprocess.PIPE,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=READY_TIMEOUT_S):
                self.kill()
                pytest.fail(f"netpay {args[:2]} printed no ready line: {log.read_text()}")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.kill()
            pytest.fail(f"netpay {args[:2]} exited with {code}: {log.read_text()}")
        self.ready: dict[str, str] = json.loads(line)

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=EXIT_TIMEOUT_S)
        self.kill()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._err.close()


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def wait_gone(pid: int) -> None:
    """Block until ``pid`` exits (a pidfd), or fail after EXIT_TIMEOUT_S."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], EXIT_TIMEOUT_S)
        assert ready, f"process {pid} outlived the vendor"
    finally:
        os.close(fd)


def port_closed(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


@dataclass
class World:
    tmp: Path
    broker: Server
    vendor: Server
    broker_dir: Path
    vendor_dir: Path
    workers: Workers
    master: int
    channel: grpc.Channel
    reader_token: str
    prices: dict[str, int]  # article id -> price in cents (paid articles only)
    vendor_key: bytes  # the vendor's public key, from its certificate at the broker
    _closers: list[Any] = field(default_factory=list)

    @property
    def grpc_address(self) -> str:
        return self.broker.ready["grpc"]

    @property
    def portal(self) -> str:
        return self.broker.ready["web"]

    @property
    def web(self) -> str:
        return self.vendor.ready["web"]

    @property
    def stub(self) -> Any:
        return broker_pb2_grpc.BrokerStub(self.channel)  # type: ignore[no-untyped-call]

    def buy_server_side(self, n: int) -> str:
        reply = self.stub.BuyCoin(
            bpb.BuyCoinRequest(
                request_id=secrets.token_hex(8),
                n=n,
                unit_value_minor=1,
                currency="EUR",
                wallet_kind=pb.WALLET_KIND_SERVER_SIDE,
                wallet_password=WALLET_PASSWORD,
            ),
            metadata=bearer_metadata(self.reader_token),
            timeout=HTTP_TIMEOUT_S,
        )
        ecoin_id: str = reply.ecoin_id
        return ecoin_id

    def coin(self, ecoin_id: str) -> Any:
        return self.stub.GetCoin(
            bpb.GetCoinRequest(ecoin_id=ecoin_id),
            metadata=bearer_metadata(self.reader_token),
            timeout=HTTP_TIMEOUT_S,
        )

    def dashboard_windows(self) -> dict[str, list[str]]:
        """The operator's dashboard (logged in with its password): the open windows
        table, coin id -> cell texts. Login and page may be served by either worker."""
        with requests.Session() as http_session:
            form = http_session.get(self.web + "/dashboard/login", timeout=HTTP_TIMEOUT_S)
            csrf = _CSRF_RE.search(form.text)
            assert form.status_code == 200 and csrf is not None, form.text
            done = http_session.post(
                self.web + "/dashboard/login",
                data={"csrf_token": csrf.group(1), "password": DASHBOARD_PASSWORD},
                timeout=HTTP_TIMEOUT_S,
            )
            assert done.status_code == 200 and "Vendor dashboard" in done.text, done.text
        table = done.text.split('<table id="windows">', 1)[1].split("</table>", 1)[0]
        rows = {}
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
            coin = re.search(r'<code title="([0-9a-f]{32})">', row)
            assert coin is not None, row
            cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            rows[coin.group(1)] = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells]
        return rows

    def start_vendor(self, vendor_id: str, host: str, workers: int) -> Server:
        """Another newspaper (``netpay vendor serve``); the caller stops it."""
        enroll = subprocess.run(
            [NETPAY, "broker", "add-vendor", vendor_id, "--data-dir", str(self.broker_dir)],
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT_S,
            check=False,
        )
        assert enroll.returncode == 0, enroll.stderr
        return Server(
            [
                "vendor",
                "serve",
                "--data-dir",
                str(self.tmp / vendor_id),
                "--broker",
                self.grpc_address,
                f"--enroll={enroll.stdout.strip()}",
                "--grpc-addr",
                "127.0.0.1:0",
                "--web-addr",
                f"{host}:0",
                "--workers",
                str(workers),
            ],
            self.tmp / f"{vendor_id}.log",
        )

    def sign_in(self, ecoin_id: str, next_path: str = "/", web: str | None = None) -> str:
        """A fresh browser (requests.Session) signs in at the newspaper ``web``
        (default: the gunicorn one) through the broker portal; returns its
        ``netpay_wallet`` cookie."""
        web = web or self.web
        host = web.removeprefix("http://").rsplit(":", 1)[0]
        with requests.Session() as http_session:
            start = http_session.get(
                web + "/netpay/wallet/signin",
                params={"next": next_path},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT_S,
            )
            assert start.status_code == 303, start.text
            portal_url = start.headers["Location"]
            assert portal_url.startswith(self.portal + "/wallet/signin?")
            form = http_session.get(portal_url, timeout=HTTP_TIMEOUT_S)
            assert form.status_code == 200, form.text
            csrf = _CSRF_RE.search(form.text)
            assert csrf is not None, form.text
            query = parse_qs(urlsplit(portal_url).query)
            back = http_session.post(
                self.portal + "/wallet/signin",
                data={
                    "csrf_token": csrf.group(1),
                    "vendor": query["vendor"][0],
                    "return_to": query["return_to"][0],
                    "ecoin_id": ecoin_id,
                    "password": WALLET_PASSWORD,
                },
                allow_redirects=False,
                timeout=HTTP_TIMEOUT_S,
            )
            assert back.status_code == 303, back.text
            assert back.headers["Location"].startswith(web + "/netpay/wallet/return?")
            done = http_session.get(
                back.headers["Location"], allow_redirects=False, timeout=HTTP_TIMEOUT_S
            )
            assert done.status_code == 200, done.text
            assert f'<meta http-equiv="refresh" content="0;url={next_path}">' in done.text
            cookie = http_session.cookies.get("netpay_wallet", domain=host)
        assert cookie and len(cookie) == 43
        return str(cookie)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("vendor_gunicorn")
    broker_dir, vendor_dir = tmp / "broker", tmp / "vendor"
    broker = Server(
        [
            "broker",
            "serve",
            "--data-dir",
            str(broker_dir),
            "--grpc-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
        ],
        tmp / "broker.log",
    )
    vendor: Server | None = None
    channel: grpc.Channel | None = None
    try:
        enroll = subprocess.run(
            [NETPAY, "broker", "add-vendor", VENDOR_ID, "--data-dir", str(broker_dir)],
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT_S,
            check=False,
        )
        assert enroll.returncode == 0, enroll.stderr
        token = enroll.stdout.strip()
        password_file = tmp / "dashboard-password"
        password_file.write_text(DASHBOARD_PASSWORD + "\n")
        vendor = Server(
            [
                "vendor",
                "serve",
                "--data-dir",
                str(vendor_dir),
                "--broker",
                broker.ready["grpc"],
                f"--enroll={token}",
                "--grpc-addr",
                "127.0.0.1:0",
                "--web-addr",
                f"{VENDOR_HOST}:0",
                "--workers",
                "2",
                "--name",
                "The Daily Hash",
                "--dashboard-password-file",
                str(password_file),
            ],
            tmp / "vendor.log",
        )
        [master] = [
            k
            for k in children_of(vendor.proc.pid)
            if b"gunicorn" in Path(f"/proc/{k}/cmdline").read_bytes()
        ]
        worker_pids = children_of(master)
        assert len(worker_pids) == 2, worker_pids
        host, port = vendor.ready["web"].removeprefix("http://").rsplit(":", 1)
        assert host == VENDOR_HOST

        channel = grpc.insecure_channel(broker.ready["grpc"], options=channel_options())
        stub = broker_pb2_grpc.BrokerStub(channel)  # type: ignore[no-untyped-call]
        stub.RegisterReader(
            bpb.RegisterReaderRequest(username=READER, password=READER_PASSWORD),
            timeout=HTTP_TIMEOUT_S,
        )
        login = stub.Login(
            bpb.LoginRequest(username=READER, password=READER_PASSWORD), timeout=HTTP_TIMEOUT_S
        )
        broker_key = stub.GetInfo(bpb.GetInfoRequest(), timeout=HTTP_TIMEOUT_S).public_key
        cert = open_envelope(
            stub.GetVendorCertificate(
                bpb.GetVendorCertificateRequest(vendor_id=VENDOR_ID), timeout=HTTP_TIMEOUT_S
            ).certificate,
            pb.VendorCertificate,
            broker_key,
        )
        assert cert.web_origin == vendor.ready["web"]
        items = requests.get(vendor.ready["web"] + "/api/articles", timeout=HTTP_TIMEOUT_S).json()
        prices = {a["id"]: a["amount"] for a in items if a["amount"] > 0}
        made = World(
            tmp=tmp,
            broker=broker,
            vendor=vendor,
            broker_dir=broker_dir,
            vendor_dir=vendor_dir,
            workers=Workers(host, int(port), worker_pids),
            master=master,
            channel=channel,
            reader_token=login.token,
            prices=prices,
            vendor_key=cert.public_key,
        )
        yield made
        for close in made._closers:
            close()
        channel.close()
        channel = None

        # SIGTERM: the vendor (and its gunicorn) and the broker exit 0.
        assert vendor.stop() == 0, vendor.log.read_text()
        for pid in (master, *worker_pids):
            wait_gone(pid)
        assert port_closed(host, int(port))
        assert broker.stop() == 0, broker.log.read_text()
        for log in (vendor.log, broker.log):
            assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if channel is not None:
            channel.close()
        if vendor is not None:
            vendor.kill()
        broker.kill()
