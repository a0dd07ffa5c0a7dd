"""Broker process wiring: config -> data dir -> storage -> services -> gRPC + web portal."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from broker.rpc import SERVICE_NAME, BrokerServicer
from broker.seedvault import SeedVault
from broker.services import BrokerServices, enroll_vendor
from broker.storage import BrokerStore
from broker.web import SECRET_FILE, PortalDeps, create_app
from netpay.clock import Clock, SystemClock
from netpay.encoding import check_currency, check_party_id, is_loopback_host
from netpay.envelope import SigningKey, load_or_create_key
from netpay.files import ensure_private_dir, load_or_create_secret, read_json, write_private
from netpay.limits import DEFAULT_LIMITS, Limits
from netpay.sqlstore import make_engine, sqlite_url
from netpay.transport.server import (
    GrpcServer,
    check_listen_address,
    create_grpc_server,
    split_host_port,
)
from netpay.v1 import broker_pb2_grpc
from netpay.webserver import InProcessWebServer, bind_listen_socket, socket_origin

__all__ = [
    "DB_FILE",
    "ID_FILE",
    "KEY_FILE",
    "BrokerConfig",
    "BrokerHandle",
    "add_vendor",
    "open_store",
    "start_broker",
]

log = logging.getLogger(__name__)

KEY_FILE = "broker.key"
ID_FILE = "broker.json"
DB_FILE = "broker.sqlite"


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    grpc_addr: str = "127.0.0.1:0"
    db_url: str | None = None  # default: sqlite file <data_dir>/broker.sqlite
    insecure: bool = False
    broker_id: str = "broker"  # used only when the data dir is first made; later read from it
    limits: Limits = DEFAULT_LIMITS
    currencies: tuple[str, ...] = ("EUR",)
    demo_deposit_minor: int = 10_000  # demo bank: opening deposit per currency for each new reader
    # The web portal's listen address (port 0 allowed); None: no portal.
    web_addr: str | None = None
    # How often the broker refunds coins past expiry + grace (0: never; tests call
    # services.refund_expired() themselves).
    refund_interval_s: float = 3600.0


@dataclass
class BrokerHandle:
    """A running broker; ``stop()`` shuts it down gracefully (idempotent)."""

    grpc_address: str
    broker_id: str
    public_key: bytes
    services: BrokerServices
    _server: GrpcServer = field(repr=False)
    _store: BrokerStore = field(repr=False)
    web_url: str | None = None  # "http://H:P" of the portal, when it is served
    _web: InProcessWebServer | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _loop_stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _loop: threading.Thread | None = field(default=None, repr=False)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._loop_stop.set()
        if self._loop is not None:
            self._loop.join(15.0)
        if self._web is not None:
            self._web.stop()
        self._server.stop()
        self._store.dispose()
        log.info("broker %s stopped", self.broker_id)


_WEB_BACKLOG = 128


def _start_portal(
    config: BrokerConfig, data_dir: Path, services: BrokerServices
) -> tuple[InProcessWebServer, str]:
    assert config.web_addr is not None
    check_listen_address(config.web_addr, insecure=config.insecure)
    host, _port = split_host_port(config.web_addr)
    sock = bind_listen_socket(config.web_addr, backlog=_WEB_BACKLOG)
    try:
        url = socket_origin(sock)
        app = create_app(
            PortalDeps(
                services=services,
                secret_key=load_or_create_secret(data_dir / SECRET_FILE),
                secure_cookies=not is_loopback_host(host),
            )
        )
        server = InProcessWebServer(sock, app, name="broker-web")
    finally:
        sock.close()  # the server holds its own copy of the descriptor
    return server, url


def open_store(data_dir: Path, db_url: str | None) -> BrokerStore:
    """The broker's store (schema made if missing): ``db_url`` or the data dir's SQLite file."""
    url = db_url or sqlite_url(data_dir / DB_FILE)
    store = BrokerStore(make_engine(url, private=True))
    store.create_schema()
    return store


def _broker_id(data_dir: Path, configured: str) -> str:
    """The id in broker.json; written from ``configured`` when the data dir is new."""
    path = data_dir / ID_FILE
    if path.exists():
        broker_id = read_json(path).get("broker_id")
        if not isinstance(broker_id, str):
            raise ValueError(f"{path} has no broker_id")
        return check_party_id(broker_id, "broker id")
    check_party_id(configured, "broker id")
    write_private(path, (json.dumps({"broker_id": configured}) + "\n").encode())
    return configured


def start_broker(config: BrokerConfig, *, clock: Clock | None = None) -> BrokerHandle:
    """Open (or make) the data dir and database, then serve gRPC on ``config.grpc_addr``."""
    for currency in config.currencies:
        check_currency(currency)
    data_dir = ensure_private_dir(Path(config.data_dir))
    key = load_or_create_key(data_dir / KEY_FILE)
    # The data key of server-side wallets (wallet-seed.key, 0600), made at first start.
    vault = SeedVault.open_dir(data_dir)
    broker_id = _broker_id(data_dir, config.broker_id)
    store = open_store(data_dir, config.db_url)
    try:
        services = _services(config, store, key, broker_id, vault, clock or SystemClock())
        server = _grpc_server(config, services)
    except BaseException:
        store.dispose()
        raise
    web: InProcessWebServer | None = None
    web_url: str | None = None
    if config.web_addr is not None:
        try:
            web, web_url = _start_portal(config, data_dir, services)
        except BaseException:
            server.stop()
            store.dispose()
            raise
        services.portal_url = web_url
        log.info("broker %s serving the web portal on %s", broker_id, web_url)
    log.info("broker %s serving gRPC on %s", broker_id, server.address)
    handle = BrokerHandle(
        grpc_address=server.address,
        broker_id=broker_id,
        public_key=key.public_key,
        services=services,
        _server=server,
        _store=store,
        web_url=web_url,
        _web=web,
    )
    if config.refund_interval_s > 0:
        _start_refund_loop(handle, config.refund_interval_s)
    return handle


def _services(
    config: BrokerConfig,
    store: BrokerStore,
    key: SigningKey,
    broker_id: str,
    vault: SeedVault,
    clock: Clock,
) -> BrokerServices:
    return BrokerServices(
        store,
        key,
        broker_id,
        limits=config.limits,
        currencies=config.currencies,
        demo_deposit_minor=config.demo_deposit_minor,
        clock=clock,
        seed_vault=vault,
    )


def _grpc_server(config: BrokerConfig, services: BrokerServices) -> GrpcServer:
    servicer = BrokerServicer(services)
    return create_grpc_server(
        config.grpc_addr,
        [lambda s: broker_pb2_grpc.add_BrokerServicer_to_server(servicer, s)],  # type: ignore[no-untyped-call]
        [SERVICE_NAME],
        insecure=config.insecure,
    )


def _start_refund_loop(handle: BrokerHandle, interval_s: float) -> None:
    handle._loop = threading.Thread(
        target=_refund_loop,
        args=(handle.services, handle._loop_stop, interval_s),
        name="broker-refunds",
        daemon=True,
    )
    handle._loop.start()


def _refund_loop(services: BrokerServices, stop: threading.Event, interval_s: float) -> None:
    """Refund coins past expiry + grace, at start and then every ``interval_s``."""
    while True:
        try:
            refunds = services.refund_expired()
            if refunds:
                log.info("refunded %d expired coins to their readers", len(refunds))
        except Exception:
            log.exception("refunding expired coins failed")
        if stop.wait(interval_s):
            return


def add_vendor(
    data_dir: Path, vendor_id: str, origin: str | None = None, *, db_url: str | None = None
) -> str:
    """Admit a vendor and return its one-time enrollment token.

    Works while the broker runs: it opens the same database (SQLite WAL, busy
    timeout) for one short transaction.
    """
    data_dir = ensure_private_dir(Path(data_dir))
    store = open_store(data_dir, db_url)
    try:
        return enroll_vendor(store, vendor_id, origin, SystemClock().now_ms())
    finally:
        store.dispose()
