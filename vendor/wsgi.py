"""Gunicorn entry point: ``vendor.wsgi:create_app_from_env()``.

The vendor's main process writes a JSON config file into its data dir and
points ``NETPAY_VENDOR_WEB_CONFIG`` at it. Each gunicorn worker builds its
own database engine and gRPC channels lazily, on its first request, so
nothing made before the fork is shared.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flask import Flask

from netpay.clock import SystemClock
from netpay.envelope import load_or_create_key
from netpay.errors import InvalidArgument
from netpay.files import read_json
from netpay.limits import Limits
from netpay.sqlstore import UnitOfWork, make_engine
from vendor.articles import load_newspaper
from vendor.broker_client import GrpcBrokerClient
from vendor.datadir import KEY_FILE, STATE_FILE
from vendor.peer_client import GrpcPeerClient
from vendor.services import VendorIdentity, VendorServices
from vendor.storage import VendorUnit
from vendor.web import WebDeps, create_app

__all__ = ["CONFIG_ENV", "create_app_from_env", "load_web_deps", "web_config"]

CONFIG_ENV = "NETPAY_VENDOR_WEB_CONFIG"
log = logging.getLogger(__name__)


def web_config(
    *,
    data_dir: Path,
    db_url: str,
    vendor_id: str,
    broker_addr: str,
    broker_id: str,
    broker_public_key: bytes,
    limits: Limits,
    display_name: str | None,
    articles_file: Path | None,
    portal_url: str = "",
    web_origin: str = "",
) -> dict[str, Any]:
    """What a web worker needs, as JSON (secrets stay in vendor.key / vendor.json)."""
    return {
        "data_dir": str(data_dir),
        "db_url": db_url,
        "vendor_id": vendor_id,
        "broker_addr": broker_addr,
        "broker_id": broker_id,
        "broker_public_key": broker_public_key.hex(),
        "limits": asdict(limits),
        "display_name": display_name,
        "articles_file": str(articles_file) if articles_file is not None else None,
        "portal_url": portal_url,
        "web_origin": web_origin,
    }


def load_web_deps(config: dict[str, Any]) -> WebDeps:
    """Build one worker's services from the config written by the main process."""
    data_dir = Path(config["data_dir"])
    state = read_json(data_dir / STATE_FILE)
    token = state.get("vendor_token")
    if not isinstance(token, str) or state.get("vendor_id") != config["vendor_id"]:
        raise InvalidArgument(f"{data_dir / STATE_FILE} does not match the web config")
    key = load_or_create_key(data_dir / KEY_FILE)
    clock = SystemClock()
    identity = VendorIdentity(
        vendor_id=config["vendor_id"],
        key=key,
        broker_id=config["broker_id"],
        broker_public_key=bytes.fromhex(config["broker_public_key"]),
    )
    engine = make_engine(config["db_url"], private=True)
    services = VendorServices(
        uow=UnitOfWork(engine, VendorUnit),
        identity=identity,
        broker=GrpcBrokerClient(config["broker_addr"], token=token),
        peers=GrpcPeerClient(identity.vendor_id, key, clock),
        limits=Limits(**config["limits"]),
        clock=clock,
    )
    articles = config.get("articles_file")
    newspaper = load_newspaper(config.get("display_name"), Path(articles) if articles else None)
    log.info("web worker %d ready for vendor %s", os.getpid(), identity.vendor_id)
    return WebDeps(
        services=services,
        newspaper=newspaper,
        clock=clock,
        portal_url=str(config.get("portal_url") or ""),
        web_origin=str(config.get("web_origin") or ""),
    )


def create_app_from_env() -> Flask:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set")
    config = read_json(Path(path))
    return create_app(lambda: load_web_deps(config), data_dir=Path(config["data_dir"]))
