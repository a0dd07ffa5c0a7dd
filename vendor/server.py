"""Vendor process wiring: data dir -> broker registration -> storage ->
services -> gRPC (Vendor service) + web site (gunicorn or in-process) +
the background loop (checkpoint, reclaim, close expired windows).

Data dir: ``vendor.key`` (Ed25519, 0600), ``vendor.json`` (0600: vendor id,
vendor token, broker address, the pinned broker id and public key),
``vendor.sqlite`` (unless ``--db-url`` / ``NETPAY_DB_URL``), ``web-secret.key``
(0600, signs the dashboard's session cookie in every web worker),
``dashboard-password.argon2`` (0600, once a dashboard password was set) and,
with web workers, ``vendor-web.json`` (what each gunicorn worker needs).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from netpay.clock import Clock, SystemClock
from netpay.envelope import SigningKey, load_or_create_key, open_envelope
from netpay.errors import InvalidArgument, NetPayError, PermissionDenied, Unavailable
from netpay.files import ensure_private_dir, read_json, write_private
from netpay.limits import limits_from_proto
from netpay.ready import child_env
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from netpay.transport.server import (
    GrpcServer,
    check_listen_address,
    create_grpc_server,
    split_host_port,
)
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from netpay.webserver import InProcessWebServer, bind_listen_socket, socket_origin
from vendor.articles import load_newspaper
from vendor.broker_client import GrpcBrokerClient
from vendor.dashboard import (
    ensure_secret_key,
    load_password_hash,
    read_password_file,
    set_dashboard_password,
)
from vendor.peer_client import GrpcPeerClient
from vendor.rpc import SERVICE_NAME, RpcDeps, VendorServicer
from vendor.services import VendorIdentity, VendorServices
from vendor.services.redeem import (
    DEFAULT_REDEEM_AT,
    Redeemer,
    next_redemption_ms,
    parse_time_of_day,
)
from vendor.services.refunds import RefundRecord, Refunds
from vendor.services.reports import Reports
from vendor.storage import Base, VendorUnit
from vendor.web import WebDeps, create_app
from vendor.wsgi import CONFIG_ENV, KEY_FILE, STATE_FILE, web_config

__all__ = [
    "DB_ENV",
    "VendorConfig",
    "VendorHandle",
    "history_now",
    "redeem_now",
    "refund_now",
    "start_vendor",
]

log = logging.getLogger(__name__)

DB_ENV = "NETPAY_DB_URL"
DB_FILE = "vendor.sqlite"
WEB_CONFIG_FILE = "vendor-web.json"
_WEB_BACKLOG = 1024
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_GUNICORN_THREADS = 4
_PASSWORD_FILE_MAX_BYTES = 4096


@dataclass(frozen=True)
class VendorConfig:
    data_dir: Path
    broker_addr: str | None = None  # needed at first start; remembered in the data dir
    enroll_token: str | None = None  # first start only
    grpc_addr: str = "127.0.0.1:0"
    web_addr: str = "127.0.0.1:0"
    db_url: str | None = None  # default sqlite <data_dir>/vendor.sqlite; env NETPAY_DB_URL
    insecure: bool = False
    workers: int = 2  # gunicorn workers; 0 = in-process threaded werkzeug server (tests)
    display_name: str | None = None
    articles_file: Path | None = None  # default: the packaged demo articles
    background: bool = True  # run the checkpoint / reclaim loop
    # First line = the dashboard's operator password, stored as an Argon2id hash
    # in the data dir; later starts keep it without this option.
    dashboard_password_file: Path | None = None
    # Daily redemption time, "HH:MM" UTC (None: only `netpay vendor redeem`).
    redeem_at: str | None = DEFAULT_REDEEM_AT


class _WebTier:
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


class VendorHandle:
    """A running vendor; ``stop()`` shuts everything down (idempotent)."""

    def __init__(
        self,
        *,
        vendor_id: str,
        grpc_address: str,
        web_url: str,
        services: VendorServices,
        redeemer: Redeemer,
        grpc_server: GrpcServer,
        web: _WebTier,
        engine: Engine,
        closers: list[Any],
        loop_stop: threading.Event,
        loop_thread: threading.Thread | None,
        keeper: _CertificateKeeper,
    ) -> None:
        self.vendor_id = vendor_id
        self.grpc_address = grpc_address
        self.web_url = web_url
        self.services = services
        self.redeemer = redeemer
        self._grpc_server = grpc_server
        self._web = web
        self._engine = engine
        self._closers = closers
        self._loop_stop = loop_stop
        self._loop_thread = loop_thread
        self._keeper = keeper
        self._lock = threading.Lock()
        self._stopped = False

    def renew_certificate_if_due(self) -> bool:
        """Re-register when the certificate is half-way to expiry (the loop does it too)."""
        return self._keeper.refresh_if_due()

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._loop_stop.set()
        if self._loop_thread is not None:
            self._loop_thread.join(_STOP_TIMEOUT_S)
        self._web.stop()
        self._grpc_server.stop(grace_s=2.0)
        for closer in self._closers:
            closer.close()
        self._engine.dispose()
        log.info("vendor %s stopped", self.vendor_id)


def _setup_dashboard(data_dir: Path, password_file: Path | None) -> None:
    """Store a new operator password (if given) and make the web secret key once."""
    if password_file is not None:
        try:
            with Path(password_file).open("rb") as f:
                raw = f.read(_PASSWORD_FILE_MAX_BYTES)
        except OSError as exc:
            raise InvalidArgument(f"cannot read the dashboard password file: {exc}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument("the dashboard password file is not UTF-8") from exc
        set_dashboard_password(data_dir, read_password_file(text))
        log.info("dashboard password set")
    load_password_hash(data_dir)  # a readable-by-others hash file stops the start
    ensure_secret_key(data_dir)


def _load_state(data_dir: Path) -> dict[str, Any]:
    path = data_dir / STATE_FILE
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionDenied(f"{path} must be mode 0600, is {mode:04o}")
    return read_json(path)


def _register(
    broker: GrpcBrokerClient,
    key: SigningKey,
    state: dict[str, Any],
    config: VendorConfig,
    *,
    grpc_address: str,
    web_origin: str,
    display_name: str,
) -> tuple[broker_pb2.BrokerInfo, broker_pb2.RegisterVendorResponse, pb.VendorCertificate]:
    """GetInfo (pin or check the broker), then RegisterVendor."""
    info = broker.get_info()
    pinned_id = state.get("broker_id")
    pinned_key = state.get("broker_public_key")
    if pinned_key is not None and (
        bytes(info.public_key).hex() != pinned_key or info.broker_id != pinned_id
    ):
        raise PermissionDenied(
            f"the broker at {broker.address} is not the pinned broker {pinned_id}: "
            "its id or key differs"
        )
    request = broker_pb2.RegisterVendorRequest(
        public_key=key.public_key,
        grpc_address=grpc_address,
        web_origin=web_origin,
        display_name=display_name,
    )
    if not state.get("vendor_token"):
        if not config.enroll_token:
            raise InvalidArgument("first start: --enroll TOKEN (from `netpay broker add-vendor`)")
        request.enrollment_token = config.enroll_token
    reply = broker.register_vendor(request)
    if (reply.broker_id and reply.broker_id != info.broker_id) or (
        reply.broker_public_key and bytes(reply.broker_public_key) != bytes(info.public_key)
    ):
        raise PermissionDenied("RegisterVendor names another broker than GetInfo")
    cert = open_envelope(reply.certificate, pb.VendorCertificate, bytes(info.public_key))
    if bytes(cert.public_key) != key.public_key or cert.vendor_id != reply.vendor_id:
        raise PermissionDenied("the broker certified another key or vendor")
    if state.get("vendor_id") and state["vendor_id"] != reply.vendor_id:
        raise PermissionDenied("the broker answered with another vendor id")
    return info, reply, cert


def _spawn_gunicorn(
    sock: socket.socket, workers: int, config_path: Path
) -> subprocess.Popen[bytes]:
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


def _wait_web_ready(web_url: str, web: _WebTier) -> None:
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


class _CertificateKeeper:
    """Re-registers before the vendor's certificate is half-way to expiry, so a
    long-running vendor stays reachable for hand-offs."""

    def __init__(
        self,
        broker: GrpcBrokerClient,
        request: broker_pb2.RegisterVendorRequest,
        servicer: VendorServicer,
        deps: RpcDeps,
        certificate: pb.VendorCertificate,
    ) -> None:
        self._broker = broker
        self._request = request
        self._servicer = servicer
        self._deps = deps
        self._certificate = certificate

    def refresh_if_due(self) -> bool:
        cert = self._certificate
        now = self._deps.clock.now_ms()
        if now < (cert.issued_at_ms + cert.valid_until_ms) // 2:
            return False
        reply = self._broker.register_vendor(self._request)
        fresh = self._deps.services.certificates.verify(reply.certificate, cert.vendor_id)
        if bytes(fresh.public_key) != bytes(cert.public_key):
            raise PermissionDenied("the broker certified another key")
        self._certificate = fresh
        self._deps = RpcDeps(self._deps.services, reply.certificate, self._deps.clock)
        self._servicer.attach(self._deps)
        log.info("certificate renewed until %d", fresh.valid_until_ms)
        return True


class _DailyRedemption:
    """Runs the Redeemer once a day at a fixed UTC time (from the background loop)."""

    def __init__(self, redeemer: Redeemer, clock: Clock, at_ms_of_day: int | None) -> None:
        self._redeemer = redeemer
        self._clock = clock
        self._at = at_ms_of_day
        self._due_ms = (
            None if at_ms_of_day is None else next_redemption_ms(clock.now_ms(), at_ms_of_day)
        )

    def run_if_due(self) -> None:
        if self._at is None or self._due_ms is None:
            return
        now_ms = self._clock.now_ms()
        if now_ms < self._due_ms:
            return
        self._due_ms = next_redemption_ms(now_ms, self._at)
        report = self._redeemer.redeem()
        log.info("daily redemption: %s", report.as_json())


def _background_loop(
    services: VendorServices,
    keeper: _CertificateKeeper,
    daily: _DailyRedemption,
    stop: threading.Event,
    interval_s: float,
) -> None:
    while not stop.wait(interval_s):
        try:
            services.checkpoint_all()
        except NetPayError as err:
            log.warning("checkpoint failed: %s: %s", err.code, err.detail)
        except Exception:
            log.exception("checkpoint failed")
        try:
            services.reclaim_due()
        except Exception:
            log.exception("reclaim failed")
        try:
            services.close_expired_windows()
        except Exception:
            log.exception("closing expired windows failed")
        try:
            keeper.refresh_if_due()
        except Exception:
            log.exception("certificate renewal failed")
        try:
            daily.run_if_due()
        except Exception:
            log.exception("daily redemption failed")


def start_vendor(config: VendorConfig, *, clock: Clock | None = None) -> VendorHandle:
    """Start a vendor: register with the broker, serve gRPC and the web site."""
    clock = clock or SystemClock()
    if config.workers < 0:
        raise InvalidArgument("workers must be >= 0")
    data_dir = ensure_private_dir(Path(config.data_dir).resolve())
    key = load_or_create_key(data_dir / KEY_FILE)
    _setup_dashboard(data_dir, config.dashboard_password_file)
    state = _load_state(data_dir)
    broker_addr = config.broker_addr or state.get("broker_addr")
    if not isinstance(broker_addr, str) or not broker_addr:
        raise InvalidArgument("first start: --broker HOST:PORT is required")
    check_listen_address(config.web_addr, insecure=config.insecure)
    redeem_at = None if config.redeem_at is None else parse_time_of_day(config.redeem_at)
    articles_file = Path(config.articles_file).resolve() if config.articles_file else None
    newspaper = load_newspaper(config.display_name, articles_file)
    display_name = config.display_name or newspaper.name

    cleanup: list[Any] = []  # things with close()/stop(), undone in reverse on failure
    web_sock = bind_listen_socket(config.web_addr, backlog=_WEB_BACKLOG)
    try:
        web_url = socket_origin(web_sock)
        servicer = VendorServicer()
        grpc_server = create_grpc_server(
            config.grpc_addr, [servicer.register], [SERVICE_NAME], insecure=config.insecure
        )
        cleanup.append(grpc_server)

        broker = GrpcBrokerClient(broker_addr, token=state.get("vendor_token"))
        cleanup.append(broker)
        info, reply, cert = _register(
            broker,
            key,
            state,
            config,
            grpc_address=grpc_server.address,
            web_origin=web_url,
            display_name=display_name,
        )
        vendor_id = reply.vendor_id
        token = reply.vendor_token or state.get("vendor_token")
        if not isinstance(token, str) or not token:
            raise Unavailable("the broker enrolled the vendor without a vendor token")
        broker.token = token
        state = {
            "vendor_id": vendor_id,
            "vendor_token": token,
            "broker_addr": broker_addr,
            "broker_id": info.broker_id,
            "broker_public_key": bytes(info.public_key).hex(),
        }
        write_private(data_dir / STATE_FILE, (json.dumps(state, indent=2) + "\n").encode())
        limits = limits_from_proto(info.limits)

        db_url = config.db_url or os.environ.get(DB_ENV) or sqlite_url(data_dir / DB_FILE)
        engine = make_engine(db_url, private=True)
        cleanup.append(_Disposer(engine))
        uow = UnitOfWork(engine, VendorUnit)
        uow.create_all(Base)
        identity = VendorIdentity(
            vendor_id=vendor_id,
            key=key,
            broker_id=info.broker_id,
            broker_public_key=bytes(info.public_key),
        )
        peers = GrpcPeerClient(vendor_id, key, clock)
        cleanup.append(peers)
        services = VendorServices(
            uow=uow, identity=identity, broker=broker, peers=peers, limits=limits, clock=clock
        )
        redeemer = Redeemer(uow=uow, identity=identity, broker=broker, clock=clock)
        daily = _DailyRedemption(redeemer, clock, redeem_at)
        # A restarted vendor holds no lease until it has renewed.
        services.reset_leases()
        try:
            services.checkpoint_all()
        except NetPayError as err:
            log.warning("first checkpoint failed: %s: %s", err.code, err.detail)
        rpc_deps = RpcDeps(services=services, certificate=reply.certificate, clock=clock)
        servicer.attach(rpc_deps)
        keeper = _CertificateKeeper(
            broker,
            broker_pb2.RegisterVendorRequest(
                public_key=key.public_key,
                grpc_address=grpc_server.address,
                web_origin=web_url,
                display_name=display_name,
            ),
            servicer,
            rpc_deps,
            cert,
        )

        if config.workers == 0:
            app = create_app(
                WebDeps(
                    services=services,
                    newspaper=newspaper,
                    clock=clock,
                    portal_url=info.portal_url,
                    web_origin=web_url,
                ),
                data_dir=data_dir,
            )
            web = _WebTier(None, InProcessWebServer(web_sock, app, name="vendor-web"))
        else:
            config_path = data_dir / WEB_CONFIG_FILE
            payload = web_config(
                data_dir=data_dir,
                db_url=db_url,
                vendor_id=vendor_id,
                broker_addr=broker_addr,
                broker_id=info.broker_id,
                broker_public_key=bytes(info.public_key),
                limits=limits,
                display_name=config.display_name,
                articles_file=articles_file,
                portal_url=info.portal_url,
                web_origin=web_url,
            )
            write_private(config_path, (json.dumps(payload, indent=2) + "\n").encode())
            web = _WebTier(_spawn_gunicorn(web_sock, config.workers, config_path), None)
        web_sock.close()  # the web tier holds its own copy
        cleanup.append(web)
        _wait_web_ready(web_url, web)

        loop_stop = threading.Event()
        loop_thread = None
        if config.background:
            loop_thread = threading.Thread(
                target=_background_loop,
                args=(services, keeper, daily, loop_stop, max(0.5, limits.lease_ttl_s / 4)),
                name="vendor-leases",
                daemon=True,
            )
            loop_thread.start()
    except BaseException:
        web_sock.close()
        for item in reversed(cleanup):
            try:
                item.stop() if hasattr(item, "stop") else item.close()
            except Exception:
                log.exception("cleanup after a failed start")
        raise
    log.info(
        "vendor %s serving gRPC on %s and the web on %s", vendor_id, grpc_server.address, web_url
    )
    return VendorHandle(
        vendor_id=vendor_id,
        grpc_address=grpc_server.address,
        web_url=web_url,
        services=services,
        redeemer=redeemer,
        grpc_server=grpc_server,
        web=web,
        engine=engine,
        closers=[broker, peers],
        loop_stop=loop_stop,
        loop_thread=loop_thread,
        keeper=keeper,
    )


def redeem_now(data_dir: Path, db_url: str | None = None, *, clock: Clock | None = None) -> Any:
    """``netpay vendor redeem``: one redemption run from the data dir (the vendor may be
    serving meanwhile: batch building is serialised in the database). Returns the
    :class:`vendor.services.redeem.RedeemReport`."""
    data_dir = Path(data_dir).resolve()
    state = _load_state(data_dir)
    if not state.get("vendor_id") or not state.get("vendor_token"):
        raise InvalidArgument(
            f"{data_dir} holds no enrolled vendor: run `netpay vendor serve` first"
        )
    key = load_or_create_key(data_dir / KEY_FILE)
    identity = VendorIdentity(
        vendor_id=str(state["vendor_id"]),
        key=key,
        broker_id=str(state["broker_id"]),
        broker_public_key=bytes.fromhex(str(state["broker_public_key"])),
    )
    url = db_url or os.environ.get(DB_ENV) or sqlite_url(data_dir / DB_FILE)
    engine = make_engine(url, private=True)
    broker = GrpcBrokerClient(str(state["broker_addr"]), token=str(state["vendor_token"]))
    try:
        uow = UnitOfWork(engine, VendorUnit)
        uow.create_all(Base)
        redeemer = Redeemer(uow=uow, identity=identity, broker=broker, clock=clock or SystemClock())
        return redeemer.redeem()
    finally:
        broker.close()
        engine.dispose()


def _enrolled_state(data_dir: Path) -> dict[str, Any]:
    state = _load_state(data_dir)
    if not state.get("vendor_id") or not state.get("broker_public_key"):
        raise InvalidArgument(
            f"{data_dir} holds no enrolled vendor: run `netpay vendor serve` first"
        )
    return state


def _offline_identity(data_dir: Path) -> VendorIdentity:
    """The enrolled vendor of ``data_dir`` (for commands that run beside the server)."""
    state = _enrolled_state(data_dir)
    if not (data_dir / KEY_FILE).is_file():
        raise InvalidArgument(f"{data_dir} holds no vendor key ({KEY_FILE})")
    return VendorIdentity(
        vendor_id=str(state["vendor_id"]),
        key=load_or_create_key(data_dir / KEY_FILE),
        broker_id=str(state["broker_id"]),
        broker_public_key=bytes.fromhex(str(state["broker_public_key"])),
    )


def _offline_uow(data_dir: Path, db_url: str | None) -> tuple[UnitOfWork[VendorUnit], Engine]:
    url = db_url or os.environ.get(DB_ENV) or sqlite_url(data_dir / DB_FILE)
    engine = make_engine(url, private=True)
    uow = UnitOfWork(engine, VendorUnit)
    uow.create_all(Base)  # a data dir from before a table was added gains it here
    return uow, engine


def refund_now(
    data_dir: Path,
    db_url: str | None = None,
    *,
    ecoin_id: str,
    receipt_to_index: int,
    amount_minor: int,
    reason: str,
    refund_id: str | None = None,
    clock: Clock | None = None,
) -> RefundRecord:
    """``netpay vendor refund``: record a refund for a paid click (the vendor may be
    serving meanwhile); the next redemption nets it. No broker call."""
    data_dir = Path(data_dir).resolve()
    identity = _offline_identity(data_dir)
    uow, engine = _offline_uow(data_dir, db_url)
    try:
        return Refunds(uow, identity, clock or SystemClock()).record(
            ecoin_id=ecoin_id,
            receipt_to_index=receipt_to_index,
            amount_minor=amount_minor,
            reason=reason,
            refund_id=refund_id,
        )
    finally:
        engine.dispose()


def history_now(data_dir: Path, db_url: str | None = None, *, limit: int = 100) -> list[Any]:
    """``netpay vendor history``: the redemption history rows, newest first
    (:meth:`vendor.services.reports.Reports.history`)."""
    data_dir = Path(data_dir).resolve()
    _enrolled_state(data_dir)  # an enrolled vendor's data dir, not a typo
    uow, engine = _offline_uow(data_dir, db_url)
    try:
        return Reports(uow, SystemClock()).history(limit=limit)
    finally:
        engine.dispose()


class _Disposer:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def close(self) -> None:
        self._engine.dispose()
