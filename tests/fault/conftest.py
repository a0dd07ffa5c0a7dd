"""A real NetPay world for fault tests, and the independent model of its books.

- ``world`` / ``real_world``: a real broker in process (gRPC on 127.0.0.1:0,
  SQLite under tmp_path), a reader with a logged-in token, in-process vendors
  on demand (``World.start_vendor``), and a :class:`ModelLedger` fed by the
  helpers that pay over HTTP. ``world`` runs on one FakeClock (started at the
  real time) shared by the broker and the vendors; ``real_world`` on the
  system clock, for vendors run as ``netpay vendor serve`` child processes.
- :class:`VendorProcess`: ``python -m netpay.cli.main vendor serve`` in its own
  process group (so SIGKILL reaches the gunicorn master and workers too), its
  JSON ready line read with a selector and a deadline.

Every test ends with :meth:`World.finish`: each vendor redeems, the model
checks each redemption paid exactly what it could claim, ``reconcile`` must
balance to the cent, and every ledger account must equal the model's.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from broker.services.reconcile import Reconciliation, reconcile
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import Clock, FakeClock, SystemClock
from netpay.encoding import b64url_decode
from netpay.envelope import open_envelope
from netpay.files import read_json
from netpay.header import Credentials, format_authorization
from netpay.transport.auth import bearer_metadata
from netpay.transport.server import channel_options
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from tests.dbs import BACKENDS, fresh_db_url
from tests.fault.model_ledger import ModelLedger, ModelWindow
from vendor.broker_client import GrpcBrokerClient
from vendor.server import VendorConfig, VendorHandle, start_vendor
from vendor.services.redeem import RedeemReport

NETPAY = [sys.executable, "-m", "netpay.cli.main"]
DEPOSIT_MINOR = 100_000
PASSWORD = "correct horse battery staple"
JSON = {"Accept": "application/json"}
HTTP_TIMEOUT_S = 30
READY_TIMEOUT_S = 60
EXIT_TIMEOUT_S = 60
# The demo newspaper's articles and their prices (minor units, u = 1: words).
PRICES = {
    "1": 1,
    "2": 2,
    "3": 3,
    "4": 5,
    "5": 7,
    "6": 8,
    "7": 10,
    "8": 12,
    "9": 15,
    "10": 18,
    "11": 20,
    "12": 25,
}


def pay_header(chain: Chain, prev: int, index: int, window: int | None = None) -> str:
    return format_authorization(
        Credentials(chain.ecoin_id.hex(), prev, index, chain.word(index), window=window)
    )


def error_code(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"<{resp.status_code} not JSON>"
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def utc_day(clock: Clock) -> str:
    return datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC).date().isoformat()


@dataclass
class Reader:
    stub: broker_pb2_grpc.BrokerStub
    token: str
    reader_id: str
    model: ModelLedger

    def buy(self, n: int) -> Chain:
        chain = Chain.make(new_ecoin_id(), n, new_seed())
        self.stub.BuyCoin(
            bpb.BuyCoinRequest(
                request_id=secrets.token_hex(8),
                ecoin_id=chain.ecoin_id.hex(),
                root=chain.root,
                n=n,
                unit_value_minor=1,
                currency="EUR",
                wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
            ),
            metadata=bearer_metadata(self.token),
            timeout=HTTP_TIMEOUT_S,
        )
        self.model.purchase(chain.ecoin_id.hex(), n)
        return chain

    def coin(self, chain: Chain) -> bpb.CoinStatus:
        reply: bpb.CoinStatus = self.stub.GetCoin(
            bpb.GetCoinRequest(ecoin_id=chain.ecoin_id.hex()),
            metadata=bearer_metadata(self.token),
            timeout=HTTP_TIMEOUT_S,
        )
        return reply


@dataclass
class World:
    tmp: Path
    clock: Clock
    broker_dir: Path
    broker: BrokerHandle
    channel: grpc.Channel
    reader: Reader
    model: ModelLedger
    vendors: list[VendorHandle] = field(default_factory=list)
    _keys: dict[str, bytes] = field(default_factory=dict)
    # "sqlite" (each party's file in its data dir) or "postgresql" (tests/dbs.py).
    backend: str = "sqlite"
    broker_db_url: str | None = None
    _vendor_db_urls: dict[str, str] = field(default_factory=dict)

    def vendor_db_url(self, vendor_id: str) -> str | None:
        """The vendor's own database: a fresh one on PostgreSQL, kept across restarts."""
        if self.backend == "sqlite":
            return None
        if vendor_id not in self._vendor_db_urls:
            self._vendor_db_urls[vendor_id] = fresh_db_url(self.backend, self.tmp, vendor_id)
        return self._vendor_db_urls[vendor_id]

    @property
    def stub(self) -> broker_pb2_grpc.BrokerStub:
        return broker_pb2_grpc.BrokerStub(self.channel)  # type: ignore[no-untyped-call]

    def advance(self, seconds: float) -> None:
        """Move the world's FakeClock (broker and vendors share it)."""
        assert isinstance(self.clock, FakeClock), "a FakeClock world"
        self.clock.advance(seconds)

    # -- parties --------------------------------------------------------------------

    def enroll(self, vendor_id: str) -> str:
        return add_vendor(self.broker_dir, vendor_id, db_url=self.broker_db_url)

    def start_vendor(self, vendor_id: str, *, enroll: bool = True, **config: Any) -> VendorHandle:
        """An in-process vendor (web in process, no background loop) on the world's clock."""
        settings: dict[str, Any] = {
            "data_dir": self.tmp / vendor_id,
            "broker_addr": self.broker.grpc_address,
            "enroll_token": self.enroll(vendor_id) if enroll else None,
            "workers": 0,
            "background": False,
            "redeem_at": None,
            "db_url": self.vendor_db_url(vendor_id),
        }
        settings.update(config)
        handle = start_vendor(VendorConfig(**settings), clock=self.clock)
        self.vendors.append(handle)
        return handle

    def stop_broker(self) -> None:
        self.broker.stop()

    def restart_broker(self) -> None:
        """The broker again, on the same data dir and the same address."""
        self.broker.stop()
        self.broker = start_broker(
            BrokerConfig(
                data_dir=self.broker_dir,
                grpc_addr=self.broker.grpc_address,
                demo_deposit_minor=DEPOSIT_MINOR,
                db_url=self.broker_db_url,
            ),
            clock=self.clock,
        )

    def vendor_key(self, vendor_id: str) -> bytes:
        """The vendor's public key as the broker certifies it."""
        if vendor_id not in self._keys:
            info = self.stub.GetInfo(bpb.GetInfoRequest(), timeout=HTTP_TIMEOUT_S)
            reply = self.stub.GetVendorCertificate(
                bpb.GetVendorCertificateRequest(vendor_id=vendor_id), timeout=HTTP_TIMEOUT_S
            )
            cert = open_envelope(reply.certificate, pb.VendorCertificate, info.public_key)
            assert cert.vendor_id == vendor_id
            self._keys[vendor_id] = bytes(cert.public_key)
        return self._keys[vendor_id]

    def vendor_token(self, vendor_id: str) -> str:
        return str(read_json(self.tmp / vendor_id / "vendor.json")["vendor_token"])

    # -- paying over HTTP (every 200 goes into the model) -----------------------------

    def receipt_of(self, resp: requests.Response, vendor_id: str) -> tuple[pb.Receipt, bytes]:
        return self.open_receipt(resp.headers["NetPay-Receipt"], vendor_id)

    def open_receipt(self, header: str, vendor_id: str) -> tuple[pb.Receipt, bytes]:
        """A ``NetPay-Receipt`` header value: the Receipt signed by the vendor, and its bytes."""
        raw = b64url_decode(header)
        receipt = open_envelope(pb.Envelope.FromString(raw), pb.Receipt, self.vendor_key(vendor_id))
        return receipt, raw

    def record(self, resp: requests.Response, vendor_id: str) -> pb.Receipt:
        """An HTTP 200 with a Receipt: checked and fed to the model."""
        assert resp.status_code == 200, (resp.status_code, resp.text[:300])
        receipt, raw = self.receipt_of(resp, vendor_id)
        self.model.receipt(vendor_id, receipt, raw)
        return receipt

    def send(
        self,
        vendor: VendorHandle,
        chain: Chain,
        prev: int,
        article: str,
        *,
        index: int | None = None,
    ) -> requests.Response:
        """GET a paid article with a header for ``(prev, index]`` (default: the price)."""
        index = prev + PRICES[article] if index is None else index
        self.model.issue(chain.ecoin_id.hex(), prev, index)
        resp = requests.get(
            f"{vendor.web_url}/articles/{article}",
            headers={**JSON, "Authorization": pay_header(chain, prev, index)},
            timeout=HTTP_TIMEOUT_S,
        )
        if resp.status_code == 200:
            self.record(resp, vendor.vendor_id)
        return resp

    def pay(self, vendor: VendorHandle, chain: Chain, prev: int, article: str) -> int:
        """A click that must be paid; returns the coin's new index."""
        resp = self.send(vendor, chain, prev, article)
        assert resp.status_code == 200, (resp.status_code, resp.text[:300])
        return prev + PRICES[article]

    def open_window(
        self, vendor: VendorHandle, chain: Chain, prev: int, units: int
    ) -> tuple[str, ModelWindow]:
        """A cookie-cache window of ``units`` words from ``prev``: (handle, model window)."""
        self.model.issue(chain.ecoin_id.hex(), prev, prev + units)
        resp = requests.post(
            vendor.web_url + "/netpay/window",
            headers={**JSON, "Authorization": pay_header(chain, prev, prev + units, units)},
            timeout=HTTP_TIMEOUT_S,
        )
        assert resp.status_code == 200, (resp.status_code, resp.text[:300])
        body = resp.json()
        assert (body["window_from"], body["window_top"]) == (prev, prev + units), body
        cookie = resp.headers["Set-Cookie"]
        assert cookie.startswith("netpay_window="), cookie
        handle = cookie.split(";", 1)[0].split("=", 1)[1]
        window = self.model.window_opened(
            vendor.vendor_id, chain.ecoin_id.hex(), int(body["epoch"]), prev, prev + units
        )
        return handle, window

    def click(self, vendor: VendorHandle, handle: str, article: str) -> requests.Response:
        """One click paid from a window (the cookie, no Authorization)."""
        resp = requests.get(
            f"{vendor.web_url}/articles/{article}",
            headers={**JSON, "Cookie": f"netpay_window={handle}"},
            timeout=HTTP_TIMEOUT_S,
        )
        if resp.status_code == 200:
            self.record(resp, vendor.vendor_id)
        return resp

    def close_window(self, vendor: VendorHandle, handle: str, window: ModelWindow) -> None:
        resp = requests.post(
            vendor.web_url + "/netpay/window/close",
            headers={**JSON, "Cookie": f"netpay_window={handle}"},
            timeout=HTTP_TIMEOUT_S,
        )
        assert resp.status_code == 200, (resp.status_code, resp.text[:300])
        body = resp.json()
        credit = self.credit_of(body["window_credit"], vendor.vendor_id)
        assert body["refund_units"] == credit.refund_units, body
        self.model.window_closed(window, credit)

    def credit_of(self, b64: str, vendor_id: str) -> pb.WindowCredit:
        return self.credit_of_bytes(b64url_decode(b64), vendor_id)

    def credit_of_bytes(self, raw: bytes, vendor_id: str) -> pb.WindowCredit:
        """A serialized Envelope(WindowCredit), signed by the vendor."""
        env = pb.Envelope.FromString(raw)
        return open_envelope(env, pb.WindowCredit, self.vendor_key(vendor_id))

    # -- the end of every test --------------------------------------------------------

    def redeem(self, vendor: VendorHandle) -> RedeemReport:
        report = vendor.redeemer.redeem()
        summary = report.as_json()
        assert summary["rejected"] == 0 and summary["pending"] == 0, summary
        self.model.redeemed(vendor.vendor_id, report.paid_minor.get("EUR", 0))
        return report

    def books(self) -> Reconciliation:
        return reconcile(self.broker.services.store, utc_day(self.clock))

    def check_books(self, vendor_ids: set[str] | None = None) -> Reconciliation:
        """Conservation to the cent, and every account equal to the model's."""
        report = self.books()
        assert report.conservation_cents == {"EUR": 0}, report.as_json()
        assert report.balanced, report.as_json()
        assert report.disputes == [], report.disputes
        self.model.check(self.broker.services.store, self.reader.reader_id, vendor_ids)
        return report

    def finish(self, *vendors: VendorHandle) -> Reconciliation:
        """Every vendor redeems (twice: the second run finds nothing), then the books."""
        for v in vendors:
            self.redeem(v)
        for v in vendors:
            again = v.redeemer.redeem()
            assert again.batches == [], again.as_json()
        return self.check_books({v.vendor_id for v in vendors})


def await_broker(vendor: VendorHandle) -> None:
    """Block until the vendor's channel to the broker is connected again.

    While the broker was down the vendor's calls failed, so gRPC backs off
    before reconnecting and fails calls fast meanwhile; this waits on the
    channel's own READY event instead of sleeping."""
    client = vendor.services._ports.broker
    assert isinstance(client, GrpcBrokerClient)
    client._broker()  # the channel, made on first use
    assert client._channel is not None
    grpc.channel_ready_future(client._channel).result(timeout=READY_TIMEOUT_S)


def _make_world(tmp: Path, clock: Clock, backend: str = "sqlite") -> Iterator[World]:
    broker_dir = tmp / "broker"
    broker_db_url = None if backend == "sqlite" else fresh_db_url(backend, tmp, "broker")
    broker = start_broker(
        BrokerConfig(data_dir=broker_dir, demo_deposit_minor=DEPOSIT_MINOR, db_url=broker_db_url),
        clock=clock,
    )
    channel = grpc.insecure_channel(broker.grpc_address, options=channel_options())
    world: World | None = None
    try:
        stub = broker_pb2_grpc.BrokerStub(channel)  # type: ignore[no-untyped-call]
        stub.RegisterReader(
            bpb.RegisterReaderRequest(username="alice", password=PASSWORD),
            timeout=HTTP_TIMEOUT_S,
        )
        login = stub.Login(
            bpb.LoginRequest(username="alice", password=PASSWORD), timeout=HTTP_TIMEOUT_S
        )
        model = ModelLedger(deposit_minor=DEPOSIT_MINOR)
        reader = Reader(stub, login.token, login.reader_id, model)
        world = World(
            tmp,
            clock,
            broker_dir,
            broker,
            channel,
            reader,
            model,
            backend=backend,
            broker_db_url=broker_db_url,
        )
        yield world
    finally:
        if world is not None:
            for v in reversed(world.vendors):
                v.stop()
            world.broker.stop()
        broker.stop()
        channel.close()


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time, so certificates and the day of the books are real.
    return FakeClock(start_ms=SystemClock().now_ms())


@pytest.fixture
def world(tmp_path: Path, clock: FakeClock) -> Iterator[World]:
    yield from _make_world(tmp_path, clock)


@pytest.fixture(params=BACKENDS)
def any_world(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[World]:
    """The world on SQLite and on PostgreSQL (the race and ledger tests run on both)."""
    yield from _make_world(tmp_path, clock, request.param)


@pytest.fixture(params=BACKENDS)
def any_real_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The system-clock world on SQLite and on PostgreSQL."""
    yield from _make_world(tmp_path, SystemClock(), request.param)


@pytest.fixture
def real_world(tmp_path: Path) -> Iterator[World]:
    yield from _make_world(tmp_path, SystemClock())


# -- vendors as child processes -----------------------------------------------------------


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except FileNotFoundError:
        return []
    return kids


def descendants_of(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        for kid in children_of(todo.pop()):
            found.append(kid)
            todo.append(kid)
    return found


def wait_gone(pid: int, timeout_s: float = EXIT_TIMEOUT_S) -> None:
    """Block until ``pid`` exits (a pidfd: no polling), or fail after ``timeout_s``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        assert ready, f"process {pid} is still running"
    finally:
        os.close(fd)


class VendorProcess:
    """``netpay vendor serve`` as a child process in its own process group."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self._err: IO[bytes] = log.open("ab")
        self.proc = subprocess.Popen(
            [*NETPAY, "vendor", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group: SIGKILL reaches gunicorn too
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=READY_TIMEOUT_S):
                self.kill_group()
                pytest.fail(f"netpay vendor serve printed no ready line: {log.read_text()}")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.kill_group()
            pytest.fail(f"netpay vendor serve exited with {code}: {log.read_text()}")
        self.ready: dict[str, str] = json.loads(line)

    @property
    def web_url(self) -> str:
        return self.ready["web"]

    def gunicorn_workers(self) -> tuple[int, list[int]]:
        """The gunicorn master and its workers."""
        [master] = [
            k
            for k in children_of(self.proc.pid)
            if b"gunicorn" in Path(f"/proc/{k}/cmdline").read_bytes()
        ]
        return master, children_of(master)

    def group(self) -> list[int]:
        """The launcher and every process under it (gunicorn master and workers)."""
        return [self.proc.pid, *descendants_of(self.proc.pid)]

    def kill_now(self) -> None:
        """SIGKILL the whole process group at once (a syscall: it does not wait)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def kill_group(self, pids: list[int] | None = None) -> list[int]:
        """SIGKILL the group (if not done yet); wait until every member is gone."""
        pids = self.group() if pids is None else pids
        self.kill_now()
        self.proc.wait(EXIT_TIMEOUT_S)
        for pid in pids:
            wait_gone(pid)
        self._close()
        return pids

    def stop(self) -> int:
        """SIGTERM; the exit code (0 for a clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(EXIT_TIMEOUT_S)
        self._close()
        return code

    def _close(self) -> None:
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._err.close()


@pytest.fixture
def vendor_processes() -> Iterator[Callable[[list[str], Path], VendorProcess]]:
    """Start ``netpay vendor serve`` children; any left running are killed at the end."""
    started: list[VendorProcess] = []

    def run(args: list[str], log: Path) -> VendorProcess:
        proc = VendorProcess(args, log)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill_group()


def redeem_cli(data_dir: Path, db_url: str | None = None) -> dict[str, Any]:
    """``netpay vendor redeem --data-dir D [--db-url U] --json``: its report."""
    extra = [] if db_url is None else ["--db-url", db_url]
    done = subprocess.run(
        [*NETPAY, "vendor", "redeem", "--data-dir", str(data_dir), *extra, "--json"],
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    report: dict[str, Any] = json.loads(done.stdout)
    return report
