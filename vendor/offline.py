"""The vendor's commands that run beside its server, from the data dir:
``netpay vendor redeem`` (:func:`redeem_now`), ``netpay vendor refund``
(:func:`refund_now`) and ``netpay vendor history`` (:func:`history_now`).
The vendor may be serving meanwhile: batch building and refund recording
are serialised in the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from netpay.clock import Clock, SystemClock
from netpay.envelope import load_or_create_key
from netpay.errors import InvalidArgument
from netpay.sqlstore import UnitOfWork, make_engine
from vendor.broker_client import GrpcBrokerClient
from vendor.datadir import KEY_FILE, database_url, enrolled_identity, enrolled_state, load_state
from vendor.services import VendorIdentity
from vendor.services.redeem import Redeemer, RedeemReport
from vendor.services.refunds import RefundRecord, Refunds
from vendor.services.reports import Reports
from vendor.storage import Base, VendorUnit

__all__ = ["history_now", "redeem_now", "refund_now"]


def redeem_now(
    data_dir: Path, db_url: str | None = None, *, clock: Clock | None = None
) -> RedeemReport:
    """``netpay vendor redeem``: one redemption run from the data dir (the vendor may be
    serving meanwhile: batch building is serialised in the database). Returns the
    :class:`vendor.services.redeem.RedeemReport`."""
    data_dir = Path(data_dir).resolve()
    state = load_state(data_dir)
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
    engine = make_engine(database_url(data_dir, db_url), private=True)
    broker = GrpcBrokerClient(str(state["broker_addr"]), token=str(state["vendor_token"]))
    try:
        uow = UnitOfWork(engine, VendorUnit)
        uow.create_all(Base)
        redeemer = Redeemer(uow=uow, identity=identity, broker=broker, clock=clock or SystemClock())
        return redeemer.redeem()
    finally:
        broker.close()
        engine.dispose()


def _offline_uow(data_dir: Path, db_url: str | None) -> tuple[UnitOfWork[VendorUnit], Engine]:
    engine = make_engine(database_url(data_dir, db_url), private=True)
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
    identity = enrolled_identity(data_dir)
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
    enrolled_state(data_dir)  # an enrolled vendor's data dir, not a typo
    uow, engine = _offline_uow(data_dir, db_url)
    try:
        return Reports(uow, SystemClock()).history(limit=limit)
    finally:
        engine.dispose()
