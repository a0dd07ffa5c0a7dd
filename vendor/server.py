"""Vendor process wiring: data dir -> broker registration -> storage ->
services -> gRPC (Vendor service) + web site (gunicorn or in-process) +
the background loop (checkpoint, reclaim, close expired windows, renew the
certificate, the daily redemption).

:func:`start_vendor` runs the steps in order: :func:`_plan` (the data dir,
the key, the dashboard password and the articles, before anything listens),
:func:`_enroll` (GetInfo and RegisterVendor; the state file),
:func:`_open_services` (the database, the services, the first checkpoint),
:func:`_attach_rpc`, :func:`_start_web` and :func:`_start_loop`; whatever
was started is stopped again when a later step fails. The data dir's files
are listed in :mod:`vendor.datadir`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from netpay.clock import Clock, SystemClock
from netpay.envelope import SigningKey, load_or_create_key, open_envelope
from netpay.errors import InvalidArgument, NetPayError, PermissionDenied, Unavailable
from netpay.files import ensure_private_dir, write_private
from netpay.limits import Limits, limits_from_proto
from netpay.sqlstore import UnitOfWork, make_engine
from netpay.transport.server import GrpcServer, check_listen_address, create_grpc_server
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from netpay.webserver import InProcessWebServer, bind_listen_socket, socket_origin
from vendor.articles import Newspaper, load_newspaper
from vendor.broker_client import GrpcBrokerClient
from vendor.dashboard import (
    ensure_secret_key,
    load_password_hash,
    read_password_file,
    set_dashboard_password,
)
from vendor.datadir import KEY_FILE, STATE_FILE, WEB_CONFIG_FILE, database_url, load_state
from vendor.peer_client import GrpcPeerClient
from vendor.rpc import SERVICE_NAME, RpcDeps, VendorServicer
from vendor.services import VendorIdentity, VendorServices
from vendor.services.redeem import (
    DEFAULT_REDEEM_AT,
    Redeemer,
    next_redemption_ms,
    parse_time_of_day,
)
from vendor.storage import Base, VendorUnit
from vendor.web import WebDeps, create_app
from vendor.webtier import WebTier, spawn_gunicorn, wait_web_ready
from vendor.wsgi import web_config

__all__ = ["VendorConfig", "VendorHandle", "start_vendor"]

log = logging.getLogger(__name__)

_WEB_BACKLOG = 1024
_STOP_TIMEOUT_S = 15.0
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
        web: WebTier,
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


@dataclass(frozen=True)
class _Plan:
    """What a start knows before anything listens."""

    data_dir: Path
    key: SigningKey
    state: dict[str, Any]
    broker_addr: str
    redeem_at_ms_of_day: int | None  # None: no daily redemption
    articles_file: Path | None
    newspaper: Newspaper
    display_name: str


@dataclass(frozen=True)
class _Enrolled:
    """What the broker said at registration."""

    info: broker_pb2.BrokerInfo
    reply: broker_pb2.RegisterVendorResponse
    certificate: pb.VendorCertificate
    identity: VendorIdentity
    limits: Limits


@dataclass(frozen=True)
class _Parts:
    """The database and the use cases over it."""

    db_url: str
    engine: Engine
    peers: GrpcPeerClient
    services: VendorServices
    redeemer: Redeemer
    daily: _DailyRedemption


def start_vendor(config: VendorConfig, *, clock: Clock | None = None) -> VendorHandle:
    """Start a vendor: register with the broker, serve gRPC and the web site."""
    clock = clock or SystemClock()
    plan = _plan(config)
    cleanup: list[Any] = []  # things with close()/stop(), undone in reverse on failure
    web_sock = bind_listen_socket(config.web_addr, backlog=_WEB_BACKLOG)
    try:
        handle = _start(config, plan, clock, web_sock, cleanup)
    except BaseException:
        web_sock.close()
        for item in reversed(cleanup):
            try:
                item.stop() if hasattr(item, "stop") else item.close()
            except Exception:
                log.exception("cleanup after a failed start")
        raise
    log.info(
        "vendor %s serving gRPC on %s and the web on %s",
        handle.vendor_id,
        handle.grpc_address,
        handle.web_url,
    )
    return handle


def _plan(config: VendorConfig) -> _Plan:
    """Check the config and read the data dir (made 0700 if new)."""
    if config.workers < 0:
        raise InvalidArgument("workers must be >= 0")
    data_dir = ensure_private_dir(Path(config.data_dir).resolve())
    key = load_or_create_key(data_dir / KEY_FILE)
    _setup_dashboard(data_dir, config.dashboard_password_file)
    state = load_state(data_dir)
    broker_addr = config.broker_addr or state.get("broker_addr")
    if not isinstance(broker_addr, str) or not broker_addr:
        raise InvalidArgument("first start: --broker HOST:PORT is required")
    check_listen_address(config.web_addr, insecure=config.insecure)
    redeem_at = None if config.redeem_at is None else parse_time_of_day(config.redeem_at)
    articles_file = Path(config.articles_file).resolve() if config.articles_file else None
    newspaper = load_newspaper(config.display_name, articles_file)
    return _Plan(
        data_dir=data_dir,
        key=key,
        state=state,
        broker_addr=broker_addr,
        redeem_at_ms_of_day=redeem_at,
        articles_file=articles_file,
        newspaper=newspaper,
        display_name=config.display_name or newspaper.name,
    )


def _start(
    config: VendorConfig,
    plan: _Plan,
    clock: Clock,
    web_sock: socket.socket,
    cleanup: list[Any],
) -> VendorHandle:
    web_url = socket_origin(web_sock)
    servicer = VendorServicer()
    grpc_server = create_grpc_server(
        config.grpc_addr, [servicer.register], [SERVICE_NAME], insecure=config.insecure
    )
    cleanup.append(grpc_server)
    broker = GrpcBrokerClient(plan.broker_addr, token=plan.state.get("vendor_token"))
    cleanup.append(broker)
    enrolled = _enroll(config, plan, broker, grpc_server.address, web_url)
    parts = _open_services(config, plan, enrolled, broker, clock, cleanup)
    keeper = _attach_rpc(
        plan,
        enrolled,
        parts,
        broker,
        servicer,
        clock,
        grpc_address=grpc_server.address,
        web_url=web_url,
    )
    web = _start_web(config, plan, enrolled, parts, clock, web_sock, web_url)
    web_sock.close()  # the web tier holds its own copy
    cleanup.append(web)
    wait_web_ready(web_url, web)
    loop_stop, loop_thread = _start_loop(config, parts, keeper, enrolled.limits)
    return VendorHandle(
        vendor_id=enrolled.identity.vendor_id,
        grpc_address=grpc_server.address,
        web_url=web_url,
        services=parts.services,
        redeemer=parts.redeemer,
        grpc_server=grpc_server,
        web=web,
        engine=parts.engine,
        closers=[broker, parts.peers],
        loop_stop=loop_stop,
        loop_thread=loop_thread,
        keeper=keeper,
    )


def _enroll(
    config: VendorConfig,
    plan: _Plan,
    broker: GrpcBrokerClient,
    grpc_address: str,
    web_url: str,
) -> _Enrolled:
    """Register with the broker and remember it (and our token) in the state file."""
    info, reply, cert = _register(
        broker,
        plan.key,
        plan.state,
        config,
        grpc_address=grpc_address,
        web_origin=web_url,
        display_name=plan.display_name,
    )
    vendor_id = reply.vendor_id
    token = reply.vendor_token or plan.state.get("vendor_token")
    if not isinstance(token, str) or not token:
        raise Unavailable("the broker enrolled the vendor without a vendor token")
    broker.token = token
    state = {
        "vendor_id": vendor_id,
        "vendor_token": token,
        "broker_addr": plan.broker_addr,
        "broker_id": info.broker_id,
        "broker_public_key": bytes(info.public_key).hex(),
    }
    write_private(plan.data_dir / STATE_FILE, (json.dumps(state, indent=2) + "\n").encode())
    identity = VendorIdentity(
        vendor_id=vendor_id,
        key=plan.key,
        broker_id=info.broker_id,
        broker_public_key=bytes(info.public_key),
    )
    return _Enrolled(info, reply, cert, identity, limits_from_proto(info.limits))


def _open_services(
    config: VendorConfig,
    plan: _Plan,
    enrolled: _Enrolled,
    broker: GrpcBrokerClient,
    clock: Clock,
    cleanup: list[Any],
) -> _Parts:
    """The database, the services and the redeemer; leases reset, then renewed."""
    db_url = database_url(plan.data_dir, config.db_url)
    engine = make_engine(db_url, private=True)
    cleanup.append(_Disposer(engine))
    uow = UnitOfWork(engine, VendorUnit)
    uow.create_all(Base)
    identity = enrolled.identity
    peers = GrpcPeerClient(identity.vendor_id, plan.key, clock)
    cleanup.append(peers)
    services = VendorServices(
        uow=uow, identity=identity, broker=broker, peers=peers, limits=enrolled.limits, clock=clock
    )
    redeemer = Redeemer(uow=uow, identity=identity, broker=broker, clock=clock)
    daily = _DailyRedemption(redeemer, clock, plan.redeem_at_ms_of_day)
    # A restarted vendor holds no lease until it has renewed.
    services.reset_leases()
    try:
        services.checkpoint_all()
    except NetPayError as err:
        log.warning("first checkpoint failed: %s: %s", err.code, err.detail)
    return _Parts(db_url, engine, peers, services, redeemer, daily)


def _attach_rpc(
    plan: _Plan,
    enrolled: _Enrolled,
    parts: _Parts,
    broker: GrpcBrokerClient,
    servicer: VendorServicer,
    clock: Clock,
    *,
    grpc_address: str,
    web_url: str,
) -> _CertificateKeeper:
    """The gRPC servicer answers from now on; the keeper renews its certificate."""
    rpc_deps = RpcDeps(services=parts.services, certificate=enrolled.reply.certificate, clock=clock)
    servicer.attach(rpc_deps)
    return _CertificateKeeper(
        broker,
        broker_pb2.RegisterVendorRequest(
            public_key=plan.key.public_key,
            grpc_address=grpc_address,
            web_origin=web_url,
            display_name=plan.display_name,
        ),
        servicer,
        rpc_deps,
        enrolled.certificate,
    )


def _start_web(
    config: VendorConfig,
    plan: _Plan,
    enrolled: _Enrolled,
    parts: _Parts,
    clock: Clock,
    web_sock: socket.socket,
    web_url: str,
) -> WebTier:
    """The site in process (``--workers 0``) or in gunicorn workers."""
    info = enrolled.info
    if config.workers == 0:
        app = create_app(
            WebDeps(
                services=parts.services,
                newspaper=plan.newspaper,
                clock=clock,
                portal_url=info.portal_url,
                web_origin=web_url,
            ),
            data_dir=plan.data_dir,
        )
        return WebTier(None, InProcessWebServer(web_sock, app, name="vendor-web"))
    config_path = plan.data_dir / WEB_CONFIG_FILE
    payload = web_config(
        data_dir=plan.data_dir,
        db_url=parts.db_url,
        vendor_id=enrolled.identity.vendor_id,
        broker_addr=plan.broker_addr,
        broker_id=info.broker_id,
        broker_public_key=bytes(info.public_key),
        limits=enrolled.limits,
        display_name=config.display_name,
        articles_file=plan.articles_file,
        portal_url=info.portal_url,
        web_origin=web_url,
    )
    write_private(config_path, (json.dumps(payload, indent=2) + "\n").encode())
    return WebTier(spawn_gunicorn(web_sock, config.workers, config_path), None)


def _start_loop(
    config: VendorConfig, parts: _Parts, keeper: _CertificateKeeper, limits: Limits
) -> tuple[threading.Event, threading.Thread | None]:
    """The background loop (unless ``background=False``) and its stop event."""
    loop_stop = threading.Event()
    if not config.background:
        return loop_stop, None
    loop_thread = threading.Thread(
        target=_background_loop,
        args=(parts.services, keeper, parts.daily, loop_stop, max(0.5, limits.lease_ttl_s / 4)),
        name="vendor-leases",
        daemon=True,
    )
    loop_thread.start()
    return loop_stop, loop_thread


class _Disposer:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def close(self) -> None:
        self._engine.dispose()
