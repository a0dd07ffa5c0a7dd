"""The vendor's tables and the repository over them (SQLAlchemy 2.0).

Four tables: ``vendor_coins`` (one row per coin this vendor has held: the
current epoch, its state, the spent index and word, the lease),
``vendor_clicks`` (the click log: one row per accepted payword, with the
signed Receipt, unique on ``(ecoin_id, to_index)``), ``vendor_windows`` (one
row per window: the prepaid words ``(window_from, window_top]``, the consumed
index, the SHA-256 of its cookie handle, the WindowCredit once closed) and
``vendor_window_clicks`` (one row per click paid from a window, with its
Receipt, unique on ``(window_id, to_index)``) and ``vendor_wallet_sessions``
(one row per reader signed in with a server-side wallet: the SHA-256 of the
``netpay_wallet`` cookie handle, the coin and the broker's WalletGrant).

Every state change is a compare-and-set (``UPDATE ... WHERE`` + rowcount)
whose new state comes from :func:`vendor.domain.transition`. Nothing here is
SQLite-only.

The paid-click path (:meth:`VendorRepository.pay_lookup`, ``cas_pay``,
``add_click``, ``get``) runs SQLAlchemy Core statements built
once at import, with ``bindparam`` placeholders, on the session's connection:
their compiled form is cached and they skip the ORM's identity map and
unit-of-work, which were most of a paid click's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from vendor.domain import (
    CloseReason,
    CoinEvent,
    CoinView,
    VendorCoinState,
    WindowEvent,
    WindowState,
    WindowView,
    transition,
    window_transition,
)

__all__ = [
    "Base",
    "ClaimStateRow",
    "ClickRecord",
    "ClickRow",
    "CoinRefundRow",
    "CoinRow",
    "EpochGrant",
    "RedemptionBatchRow",
    "RedemptionLockRow",
    "Revenue",
    "StoredCoin",
    "VendorRefundRow",
    "VendorRepository",
    "WalletSession",
    "WalletSessionRow",
    "WindowClickRecord",
    "WindowClickRow",
    "WindowRecord",
    "WindowRow",
    "refund_pending_units",
    "set_refund_pending",
]


class Base(DeclarativeBase):
    pass


class CoinRow(Base):
    __tablename__ = "vendor_coins"

    ecoin_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    idx: Mapped[int] = mapped_column(Integer)
    payword: Mapped[bytes] = mapped_column(LargeBinary(32))
    base_index: Mapped[int] = mapped_column(Integer)
    base_word: Mapped[bytes] = mapped_column(LargeBinary(32))
    n: Mapped[int] = mapped_column(Integer)
    unit_value_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    touchstone: Mapped[bytes] = mapped_column(LargeBinary)
    lease_deadline_ms: Mapped[int] = mapped_column(BigInteger)
    acknowledged_index: Mapped[int] = mapped_column(Integer)
    max_accepted_index: Mapped[int] = mapped_column(Integer)
    handoff_to: Mapped[str | None] = mapped_column(String(32), default=None)
    handoff_coin_index: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    handoff_started_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class ClickRow(Base):
    __tablename__ = "vendor_clicks"
    __table_args__ = (UniqueConstraint("ecoin_id", "to_index", name="uq_click_coin_index"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    ecoin_id: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(BigInteger)
    from_index: Mapped[int] = mapped_column(Integer)
    to_index: Mapped[int] = mapped_column(Integer)
    payword: Mapped[bytes] = mapped_column(LargeBinary(32))
    item_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class WindowRow(Base):
    __tablename__ = "vendor_windows"
    __table_args__ = (
        UniqueConstraint("handle_sha256", name="uq_window_handle"),
        UniqueConstraint("ecoin_id", "window_top", name="uq_window_coin_top"),
        # At most one open window per coin (the open path also closes the old one
        # in its transaction; this index is the database's own guard).
        Index(
            "uq_window_open_per_coin",
            "ecoin_id",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
        Index("ix_window_state_expiry", "state", "expires_at_ms"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    ecoin_id: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(BigInteger)
    handle_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    window_from: Mapped[int] = mapped_column(Integer)
    window_top: Mapped[int] = mapped_column(Integer)
    payword: Mapped[bytes] = mapped_column(LargeBinary(32))  # w[window_top]
    consumed_index: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(8))
    unit_value_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    opened_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    closed_at_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    close_reason: Mapped[str | None] = mapped_column(String(16), default=None)
    credit: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class WindowClickRow(Base):
    __tablename__ = "vendor_window_clicks"
    __table_args__ = (
        UniqueConstraint("window_id", "to_index", name="uq_window_click_index"),
        Index("ix_window_click_item", "window_id", "item_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    window_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("vendor_windows.id")
    )
    item_id: Mapped[str] = mapped_column(String(64))
    from_index: Mapped[int] = mapped_column(Integer)
    to_index: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class CoinRefundRow(Base):
    """Window-credit units of a coin on their way back to the reader, as the
    broker last told us (CustodyGrant.refund_pending_units)."""

    __tablename__ = "vendor_coin_refunds"

    ecoin_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    refund_pending_units: Mapped[int] = mapped_column(Integer)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class RedemptionBatchRow(Base):
    """A Redeem batch, stored (with its exact request) before it is sent."""

    __tablename__ = "vendor_redemptions"

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(8), index=True)  # "pending" | "done"
    request: Mapped[bytes] = mapped_column(LargeBinary)  # serialized RedeemRequest
    response: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    finished_at_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)


class ClaimStateRow(Base):
    """One claim this vendor made: (from, to] of an epoch, and what the broker said."""

    __tablename__ = "vendor_claims"
    __table_args__ = (UniqueConstraint("ecoin_id", "epoch", "to_index", name="uq_claim_top"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    batch_id: Mapped[str] = mapped_column(ForeignKey("vendor_redemptions.batch_id"), index=True)
    ecoin_id: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(BigInteger)
    from_index: Mapped[int] = mapped_column(Integer)
    to_index: Mapped[int] = mapped_column(Integer)
    units: Mapped[int] = mapped_column(Integer)  # receipt units claimed
    status: Mapped[str] = mapped_column(String(8))  # "pending" | "accepted" | "rejected"
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[str | None] = mapped_column(String(200), default=None)
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))


class RedemptionLockRow(Base):
    """One row, locked while a batch is built, so two runs never claim the same words."""

    __tablename__ = "vendor_redemption_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_batch_ms: Mapped[int] = mapped_column(BigInteger)


class WalletSessionRow(Base):
    """A reader signed in with a server-side wallet (docs/protocol.md,
    "Server-side wallets at the vendor")."""

    __tablename__ = "vendor_wallet_sessions"
    __table_args__ = (
        UniqueConstraint("handle_sha256", name="uq_wallet_session_handle"),
        Index("ix_wallet_session_expiry", "expires_at_ms"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    handle_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    ecoin_id: Mapped[str] = mapped_column(String(32))
    grant_id: Mapped[str] = mapped_column(String(32))
    grant: Mapped[bytes] = mapped_column(LargeBinary)  # serialized Envelope(WalletGrant)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class WalletSession:
    ecoin_id: str
    grant_id: str
    grant: bytes
    created_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True)
class WindowRecord:
    """A window to insert (its id is given by the database)."""

    ecoin_id: str
    epoch: int
    handle_sha256: bytes
    window_from: int
    window_top: int
    payword: bytes
    unit_value_minor: int
    currency: str
    opened_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True)
class WindowClickRecord:
    window_id: int
    item_id: str
    from_index: int
    to_index: int
    amount_minor: int
    currency: str
    receipt: bytes
    created_at_ms: int


def _window(row: WindowRow) -> WindowView:
    return WindowView(
        window_id=row.id,
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        window_from=row.window_from,
        window_top=row.window_top,
        consumed_index=row.consumed_index,
        state=WindowState(row.state),
        opened_at_ms=row.opened_at_ms,
        expires_at_ms=row.expires_at_ms,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        closed_at_ms=row.closed_at_ms,
        close_reason=CloseReason(row.close_reason) if row.close_reason else None,
        credit=row.credit,
    )


def _window_click(row: WindowClickRow) -> WindowClickRecord:
    return WindowClickRecord(
        window_id=row.window_id,
        item_id=row.item_id,
        from_index=row.from_index,
        to_index=row.to_index,
        amount_minor=row.amount_minor,
        currency=row.currency,
        receipt=row.receipt,
        created_at_ms=row.created_at_ms,
    )


@dataclass(frozen=True)
class StoredCoin:
    """A coin row as the services see it."""

    view: CoinView
    base_index: int
    base_word: bytes
    touchstone: bytes
    handoff_to: str | None
    handoff_coin_index: bytes | None
    handoff_started_ms: int | None


@dataclass(frozen=True)
class ClickRecord:
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    payword: bytes
    item_id: str
    amount_minor: int
    currency: str
    receipt: bytes
    created_at_ms: int


def _stored(row: CoinRow | Row[Any]) -> StoredCoin:
    """A StoredCoin from an ORM row or a Core row of ``vendor_coins`` (same names)."""
    view = CoinView(
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        state=VendorCoinState(row.state),
        index=row.idx,
        payword=row.payword,
        n=row.n,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        expires_at_ms=row.expires_at_ms,
        lease_deadline_ms=row.lease_deadline_ms,
        acknowledged_index=row.acknowledged_index,
        max_accepted_index=row.max_accepted_index,
    )
    return StoredCoin(
        view=view,
        base_index=row.base_index,
        base_word=row.base_word,
        touchstone=row.touchstone,
        handoff_to=row.handoff_to,
        handoff_coin_index=row.handoff_coin_index,
        handoff_started_ms=row.handoff_started_ms,
    )


def _click(row: ClickRow) -> ClickRecord:
    return ClickRecord(
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        from_index=row.from_index,
        to_index=row.to_index,
        payword=row.payword,
        item_id=row.item_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        receipt=row.receipt,
        created_at_ms=row.created_at_ms,
    )


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


# -- the paid-click statements (Core, compiled once) -----------------------------

_COINS: Table = Base.metadata.tables[CoinRow.__tablename__]
_CLICKS: Table = Base.metadata.tables[ClickRow.__tablename__]

# The coin and, in the same round trip, the click that already took ``to_index``
# (unique on (ecoin_id, to_index)): a retry's lookup and the coin for one read.
_LOOKUP_COLUMNS = [*_COINS.c, *(col.label(f"click_{col.name}") for col in _CLICKS.c)]
_SELECT_COIN_AND_CLICK = (
    select(*_LOOKUP_COLUMNS)
    .select_from(
        _COINS.outerjoin(
            _CLICKS,
            and_(
                _CLICKS.c.ecoin_id == _COINS.c.ecoin_id,
                _CLICKS.c.to_index == bindparam("p_to_index", type_=Integer),
            ),
        )
    )
    .where(_COINS.c.ecoin_id == bindparam("p_ecoin_id", type_=String))
)
_SELECT_COIN = select(*_COINS.c).where(_COINS.c.ecoin_id == bindparam("p_ecoin_id", type_=String))
# The payment compare-and-set: HELD in this epoch, at from_index, lease live.
_CAS_PAY = (
    update(_COINS)
    .where(
        _COINS.c.ecoin_id == bindparam("p_ecoin_id", type_=String),
        _COINS.c.epoch == bindparam("p_epoch", type_=BigInteger),
        _COINS.c.idx == bindparam("p_from_index", type_=Integer),
        _COINS.c.state == bindparam("p_held", type_=String),
        _COINS.c.lease_deadline_ms > bindparam("p_now_ms", type_=BigInteger),
    )
    .values(
        state=bindparam("p_new_state", type_=String),
        idx=bindparam("p_to_index", type_=Integer),
        payword=bindparam("p_payword", type_=LargeBinary),
        max_accepted_index=case(
            (
                _COINS.c.max_accepted_index < bindparam("p_to_index", type_=Integer),
                bindparam("p_to_index", type_=Integer),
            ),
            else_=_COINS.c.max_accepted_index,
        ),
        updated_at_ms=bindparam("p_now_ms", type_=BigInteger),
    )
)
# inline(): the click's id is never needed back (no RETURNING, no lastrowid).
_INSERT_CLICK = (
    insert(_CLICKS)
    .inline()
    .values(
        ecoin_id=bindparam("p_ecoin_id", type_=String),
        epoch=bindparam("p_epoch", type_=BigInteger),
        from_index=bindparam("p_from_index", type_=Integer),
        to_index=bindparam("p_to_index", type_=Integer),
        payword=bindparam("p_payword", type_=LargeBinary),
        item_id=bindparam("p_item_id", type_=String),
        amount_minor=bindparam("p_amount_minor", type_=BigInteger),
        currency=bindparam("p_currency", type_=String),
        receipt=bindparam("p_receipt", type_=LargeBinary),
        created_at_ms=bindparam("p_created_at_ms", type_=BigInteger),
    )
)


def _lookup_click(row: Row[Any]) -> ClickRecord | None:
    """The click half of a ``_SELECT_COIN_AND_CLICK`` row (None when no click matched)."""
    m = row._mapping
    if m["click_id"] is None:
        return None
    return ClickRecord(
        ecoin_id=m["click_ecoin_id"],
        epoch=m["click_epoch"],
        from_index=m["click_from_index"],
        to_index=m["click_to_index"],
        payword=m["click_payword"],
        item_id=m["click_item_id"],
        amount_minor=m["click_amount_minor"],
        currency=m["click_currency"],
        receipt=m["click_receipt"],
        created_at_ms=m["click_created_at_ms"],
    )


@dataclass(frozen=True)
class Revenue:
    """The clicks of one currency: what the vendor will claim at redemption."""

    currency: str
    amount_minor: int
    clicks: int


@dataclass(frozen=True)
class EpochGrant:
    """A new epoch granted by the broker, as the repository stores it."""

    ecoin_id: str
    epoch: int
    base_index: int
    base_word: bytes
    n: int
    unit_value_minor: int
    currency: str
    expires_at_ms: int
    touchstone: bytes
    lease_deadline_ms: int


class VendorRepository:
    """Reads and compare-and-sets on the vendor's tables; the caller commits."""

    def get(self, session: Session, ecoin_id: str) -> StoredCoin | None:
        """The coin row as stored now (a fresh read, never the identity map)."""
        row = session.connection().execute(_SELECT_COIN, {"p_ecoin_id": ecoin_id}).first()
        return _stored(row) if row is not None else None

    def pay_lookup(
        self, session: Session, ecoin_id: str, to_index: int
    ) -> tuple[StoredCoin | None, ClickRecord | None]:
        """One read for a payment: the coin row and the click that took ``to_index``.

        The click is only found with its coin row (a click implies a coin row).
        """
        row = (
            session.connection()
            .execute(_SELECT_COIN_AND_CLICK, {"p_ecoin_id": ecoin_id, "p_to_index": to_index})
            .first()
        )
        if row is None:
            return None, None
        return _stored(row), _lookup_click(row)

    # -- custody ---------------------------------------------------------------

    def open_epoch(self, session: Session, grant: EpochGrant, now_ms: int) -> StoredCoin:
        """Store a new epoch for this vendor; an existing row at the same or a
        later epoch is authoritative and is returned unchanged."""
        row = session.get(CoinRow, grant.ecoin_id, populate_existing=True)
        if row is None:
            state = transition(None, CoinEvent.ACQUIRED)
            row = CoinRow(
                ecoin_id=grant.ecoin_id,
                epoch=grant.epoch,
                state=state.value,
                idx=grant.base_index,
                payword=grant.base_word,
                base_index=grant.base_index,
                base_word=grant.base_word,
                n=grant.n,
                unit_value_minor=grant.unit_value_minor,
                currency=grant.currency,
                expires_at_ms=grant.expires_at_ms,
                touchstone=grant.touchstone,
                lease_deadline_ms=grant.lease_deadline_ms,
                acknowledged_index=grant.base_index,
                max_accepted_index=0,
                handoff_to=None,
                handoff_coin_index=None,
                handoff_started_ms=None,
                updated_at_ms=now_ms,
            )
            session.add(row)
            session.flush()
            return _stored(row)
        if row.epoch >= grant.epoch:
            return _stored(row)
        current = VendorCoinState(row.state)
        if current is not VendorCoinState.CLOSED:
            # We missed the end of our older epoch: close it first.
            current = transition(current, CoinEvent.EPOCH_CLOSED)
        state = transition(current, CoinEvent.ACQUIRED)
        row.epoch = grant.epoch
        row.state = state.value
        row.idx = grant.base_index
        row.payword = grant.base_word
        row.base_index = grant.base_index
        row.base_word = grant.base_word
        row.touchstone = grant.touchstone
        row.lease_deadline_ms = grant.lease_deadline_ms
        row.acknowledged_index = grant.base_index
        row.handoff_to = None
        row.handoff_coin_index = None
        row.handoff_started_ms = None
        row.updated_at_ms = now_ms
        session.flush()
        return _stored(row)

    def cas_pay(
        self,
        session: Session,
        *,
        ecoin_id: str,
        epoch: int,
        from_index: int,
        to_index: int,
        payword: bytes,
        now_ms: int,
    ) -> bool:
        """Move the index ``from_index -> to_index`` if the coin is HELD in
        ``epoch`` at ``from_index`` with a live lease."""
        new_state = transition(VendorCoinState.HELD, CoinEvent.PAID)
        result = session.connection().execute(
            _CAS_PAY,
            {
                "p_ecoin_id": ecoin_id,
                "p_epoch": epoch,
                "p_from_index": from_index,
                "p_held": VendorCoinState.HELD.value,
                "p_now_ms": now_ms,
                "p_new_state": new_state.value,
                "p_to_index": to_index,
                "p_payword": payword,
            },
        )
        return _rowcount(result) == 1

    def start_handoff(
        self,
        session: Session,
        *,
        ecoin_id: str,
        epoch: int,
        index: int,
        to_vendor: str,
        coin_index: bytes,
        now_ms: int,
    ) -> bool:
        """HELD -> HANDING_OFF with the same compare-and-set payments use."""
        new_state = transition(VendorCoinState.HELD, CoinEvent.HANDOFF_STARTED)
        result = session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == epoch,
                CoinRow.idx == index,
                CoinRow.state == VendorCoinState.HELD.value,
            )
            .values(
                state=new_state.value,
                handoff_to=to_vendor,
                handoff_coin_index=coin_index,
                handoff_started_ms=now_ms,
                lease_deadline_ms=0,
                updated_at_ms=now_ms,
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def reclaimed(
        self,
        session: Session,
        *,
        ecoin_id: str,
        old_epoch: int,
        new_epoch: int,
        base_index: int,
        base_word: bytes,
        lease_deadline_ms: int,
        now_ms: int,
    ) -> bool:
        """HANDING_OFF in ``old_epoch`` -> HELD in ``new_epoch`` (Reclaim committed)."""
        new_state = transition(VendorCoinState.HANDING_OFF, CoinEvent.RECLAIMED)
        result = session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == old_epoch,
                CoinRow.state == VendorCoinState.HANDING_OFF.value,
            )
            .values(
                state=new_state.value,
                epoch=new_epoch,
                idx=base_index,
                payword=base_word,
                base_index=base_index,
                base_word=base_word,
                acknowledged_index=base_index,
                lease_deadline_ms=lease_deadline_ms,
                handoff_to=None,
                handoff_coin_index=None,
                handoff_started_ms=None,
                updated_at_ms=now_ms,
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def close_epoch(self, session: Session, *, ecoin_id: str, epoch: int, now_ms: int) -> bool:
        """HELD or HANDING_OFF in ``epoch`` -> CLOSED (the epoch is not ours any more)."""
        row = session.get(CoinRow, ecoin_id, populate_existing=True)
        if row is None or row.epoch != epoch:
            return False
        current = VendorCoinState(row.state)
        if current is VendorCoinState.CLOSED:
            return False
        new_state = transition(current, CoinEvent.EPOCH_CLOSED)
        result = session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == epoch,
                CoinRow.state == current.value,
            )
            .values(state=new_state.value, lease_deadline_ms=0, updated_at_ms=now_ms)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def renew_lease(
        self,
        session: Session,
        *,
        ecoin_id: str,
        epoch: int,
        lease_deadline_ms: int,
        acknowledged_index: int,
    ) -> bool:
        """Raise the lease deadline and the acknowledged index (never lowers either)."""
        result = session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == epoch,
                CoinRow.state == VendorCoinState.HELD.value,
            )
            .values(
                lease_deadline_ms=case(
                    (CoinRow.lease_deadline_ms < lease_deadline_ms, lease_deadline_ms),
                    else_=CoinRow.lease_deadline_ms,
                ),
                acknowledged_index=case(
                    (CoinRow.acknowledged_index < acknowledged_index, acknowledged_index),
                    else_=CoinRow.acknowledged_index,
                ),
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def drop_lease(self, session: Session, *, ecoin_id: str, epoch: int) -> None:
        session.execute(
            update(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id, CoinRow.epoch == epoch)
            .values(lease_deadline_ms=0)
            .execution_options(synchronize_session=False)
        )

    def drop_all_leases(self, session: Session) -> None:
        """At start: a restarted vendor holds no lease until it has renewed."""
        session.execute(
            update(CoinRow).values(lease_deadline_ms=0).execution_options(synchronize_session=False)
        )

    def held_coins(
        self, session: Session, *, after_ecoin_id: str = "", limit: int = 10_000
    ) -> list[StoredCoin]:
        rows = session.scalars(
            select(CoinRow)
            .where(CoinRow.state == VendorCoinState.HELD.value, CoinRow.ecoin_id > after_ecoin_id)
            .order_by(CoinRow.ecoin_id)
            .limit(limit)
        )
        return [_stored(r) for r in rows]

    def handoffs_started_before(
        self, session: Session, cutoff_ms: int, *, limit: int = 1_000
    ) -> list[StoredCoin]:
        rows = session.scalars(
            select(CoinRow)
            .where(
                CoinRow.state == VendorCoinState.HANDING_OFF.value,
                CoinRow.handoff_started_ms <= cutoff_ms,
            )
            .order_by(CoinRow.handoff_started_ms)
            .limit(limit)
        )
        return [_stored(r) for r in rows]

    # -- click log -------------------------------------------------------------

    def add_click(self, session: Session, click: ClickRecord) -> None:
        """Insert one click (IntegrityError if ``(ecoin_id, to_index)`` is taken)."""
        session.connection().execute(
            _INSERT_CLICK,
            {
                "p_ecoin_id": click.ecoin_id,
                "p_epoch": click.epoch,
                "p_from_index": click.from_index,
                "p_to_index": click.to_index,
                "p_payword": click.payword,
                "p_item_id": click.item_id,
                "p_amount_minor": click.amount_minor,
                "p_currency": click.currency,
                "p_receipt": click.receipt,
                "p_created_at_ms": click.created_at_ms,
            },
        )

    def clicks(self, session: Session, ecoin_id: str) -> Sequence[ClickRecord]:
        rows = session.scalars(
            select(ClickRow).where(ClickRow.ecoin_id == ecoin_id).order_by(ClickRow.to_index)
        )
        return [_click(r) for r in rows]

    # -- the operator's dashboard (read-only) ----------------------------------

    def click_count(self, session: Session) -> int:
        """Paid clicks and window clicks."""
        return sum(
            int(session.scalar(select(func.count()).select_from(row)) or 0)
            for row in (ClickRow, WindowClickRow)
        )

    def recent_clicks(self, session: Session, *, limit: int) -> list[ClickRecord]:
        """The last ``limit`` clicks, newest first."""
        rows = session.scalars(select(ClickRow).order_by(ClickRow.id.desc()).limit(limit))
        return [_click(r) for r in rows]

    def revenue(self, session: Session) -> list[Revenue]:
        """Sum and count of what readers consumed, per currency: paid clicks and window clicks."""
        totals: dict[str, tuple[int, int]] = {}
        for row in (ClickRow, WindowClickRow):
            for currency, total, count in session.execute(
                select(row.currency, func.sum(row.amount_minor), func.count()).group_by(
                    row.currency
                )
            ):
                before_total, before_count = totals.get(currency, (0, 0))
                totals[currency] = (before_total + int(total or 0), before_count + int(count))
        return [Revenue(c, total, count) for c, (total, count) in sorted(totals.items())]

    def coin_counts(self, session: Session) -> dict[VendorCoinState, int]:
        """How many coin rows are in each state."""
        rows = session.execute(select(CoinRow.state, func.count()).group_by(CoinRow.state))
        counts = dict.fromkeys(VendorCoinState, 0)
        for state, count in rows:
            counts[VendorCoinState(state)] = int(count)
        return counts

    def coins_in(
        self, session: Session, states: Sequence[VendorCoinState], *, limit: int
    ) -> list[StoredCoin]:
        """Coins in ``states``, most recently changed first."""
        rows = session.scalars(
            select(CoinRow)
            .where(CoinRow.state.in_([s.value for s in states]))
            .order_by(CoinRow.updated_at_ms.desc(), CoinRow.ecoin_id)
            .limit(limit)
        )
        return [_stored(r) for r in rows]

    # -- windows -----------------------------------------------------------------

    def add_window(self, session: Session, window: WindowRecord) -> int:
        """Insert an OPEN window; returns its id (IntegrityError when the coin
        already has an open window, or the handle or the top is taken)."""
        state = window_transition(None, WindowEvent.OPENED)
        row = WindowRow(
            ecoin_id=window.ecoin_id,
            epoch=window.epoch,
            handle_sha256=window.handle_sha256,
            window_from=window.window_from,
            window_top=window.window_top,
            payword=window.payword,
            consumed_index=window.window_from,
            state=state.value,
            unit_value_minor=window.unit_value_minor,
            currency=window.currency,
            opened_at_ms=window.opened_at_ms,
            expires_at_ms=window.expires_at_ms,
            closed_at_ms=None,
            close_reason=None,
            credit=None,
        )
        session.add(row)
        session.flush()
        return row.id

    def window(self, session: Session, window_id: int) -> WindowView | None:
        row = session.scalars(select(WindowRow).where(WindowRow.id == window_id)).first()
        return _window(row) if row is not None else None

    def window_by_handle(self, session: Session, handle_sha256: bytes) -> WindowView | None:
        row = session.scalars(
            select(WindowRow).where(WindowRow.handle_sha256 == handle_sha256)
        ).first()
        return _window(row) if row is not None else None

    def window_at_top(
        self, session: Session, ecoin_id: str, window_top: int
    ) -> tuple[WindowView, bytes, bytes] | None:
        """The window opened up to ``window_top``, its ``w[top]`` and handle digest."""
        row = session.scalars(
            select(WindowRow).where(
                WindowRow.ecoin_id == ecoin_id, WindowRow.window_top == window_top
            )
        ).first()
        return (_window(row), row.payword, row.handle_sha256) if row is not None else None

    def open_window_of(self, session: Session, ecoin_id: str) -> WindowView | None:
        row = session.scalars(
            select(WindowRow).where(
                WindowRow.ecoin_id == ecoin_id, WindowRow.state == WindowState.OPEN.value
            )
        ).first()
        return _window(row) if row is not None else None

    def windows_of(self, session: Session, ecoin_id: str) -> list[WindowView]:
        rows = session.scalars(
            select(WindowRow).where(WindowRow.ecoin_id == ecoin_id).order_by(WindowRow.id)
        )
        return [_window(r) for r in rows]

    def handoff_credit(self, session: Session, ecoin_id: str, epoch: int) -> bytes | None:
        """The WindowCredit of the window a hand-off of ``epoch`` closed, if any."""
        return session.scalars(
            select(WindowRow.credit).where(
                WindowRow.ecoin_id == ecoin_id,
                WindowRow.epoch == epoch,
                WindowRow.close_reason == CloseReason.HANDOFF.value,
            )
        ).first()

    def cas_consume(
        self,
        session: Session,
        *,
        window_id: int,
        ecoin_id: str,
        epoch: int,
        from_index: int,
        to_index: int,
        now_ms: int,
    ) -> bool:
        """Move the window's consumed index ``from_index -> to_index`` if the
        window is OPEN, unexpired, at ``from_index`` with room up to
        ``to_index``, and the coin is HELD in ``epoch`` with a live lease."""
        state = window_transition(WindowState.OPEN, WindowEvent.CONSUMED)
        coin_live = exists().where(
            CoinRow.ecoin_id == ecoin_id,
            CoinRow.epoch == epoch,
            CoinRow.state == VendorCoinState.HELD.value,
            CoinRow.lease_deadline_ms > now_ms,
        )
        result = session.execute(
            update(WindowRow)
            .where(
                WindowRow.id == window_id,
                WindowRow.ecoin_id == ecoin_id,
                WindowRow.epoch == epoch,
                WindowRow.state == WindowState.OPEN.value,
                WindowRow.consumed_index == from_index,
                WindowRow.window_top >= to_index,
                WindowRow.expires_at_ms > now_ms,
                coin_live,
            )
            .values(consumed_index=to_index, state=state.value)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def add_window_click(self, session: Session, click: WindowClickRecord) -> None:
        """Insert one window click (IntegrityError if ``(window_id, to_index)`` is taken)."""
        session.add(
            WindowClickRow(
                window_id=click.window_id,
                item_id=click.item_id,
                from_index=click.from_index,
                to_index=click.to_index,
                amount_minor=click.amount_minor,
                currency=click.currency,
                receipt=click.receipt,
                created_at_ms=click.created_at_ms,
            )
        )
        session.flush()

    def window_click_for(
        self, session: Session, window_id: int, item_id: str, since_ms: int
    ) -> WindowClickRecord | None:
        """The newest click of ``item_id`` from the window at or after ``since_ms``."""
        row = session.scalars(
            select(WindowClickRow)
            .where(
                WindowClickRow.window_id == window_id,
                WindowClickRow.item_id == item_id,
                WindowClickRow.created_at_ms >= since_ms,
            )
            .order_by(WindowClickRow.to_index.desc())
            .limit(1)
        ).first()
        return _window_click(row) if row is not None else None

    def window_clicks(self, session: Session, window_id: int) -> list[WindowClickRecord]:
        rows = session.scalars(
            select(WindowClickRow)
            .where(WindowClickRow.window_id == window_id)
            .order_by(WindowClickRow.to_index)
        )
        return [_window_click(r) for r in rows]

    def close_window(
        self,
        session: Session,
        *,
        window_id: int,
        consumed_index: int,
        reason: CloseReason,
        credit: bytes,
        now_ms: int,
    ) -> bool:
        """OPEN -> CLOSED if still OPEN at ``consumed_index`` (the credit signed
        for that index stays true)."""
        state = window_transition(WindowState.OPEN, WindowEvent.CLOSED)
        result = session.execute(
            update(WindowRow)
            .where(
                WindowRow.id == window_id,
                WindowRow.state == WindowState.OPEN.value,
                WindowRow.consumed_index == consumed_index,
            )
            .values(
                state=state.value,
                closed_at_ms=now_ms,
                close_reason=reason.value,
                credit=credit,
            )
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    def windows_due(self, session: Session, now_ms: int, *, limit: int = 1_000) -> list[WindowView]:
        """OPEN windows whose expiry has passed, oldest first."""
        rows = session.scalars(
            select(WindowRow)
            .where(WindowRow.state == WindowState.OPEN.value, WindowRow.expires_at_ms <= now_ms)
            .order_by(WindowRow.expires_at_ms, WindowRow.id)
            .limit(limit)
        )
        return [_window(r) for r in rows]

    def open_windows(self, session: Session, *, limit: int) -> list[WindowView]:
        """OPEN windows, newest first (the dashboard)."""
        rows = session.scalars(
            select(WindowRow)
            .where(WindowRow.state == WindowState.OPEN.value)
            .order_by(WindowRow.id.desc())
            .limit(limit)
        )
        return [_window(r) for r in rows]

    def open_window_count(self, session: Session) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(WindowRow)
                .where(WindowRow.state == WindowState.OPEN.value)
            )
            or 0
        )

    # -- server-side wallet sessions ---------------------------------------------

    def add_wallet_session(
        self, session: Session, handle_sha256: bytes, wallet: WalletSession
    ) -> None:
        session.add(
            WalletSessionRow(
                handle_sha256=handle_sha256,
                ecoin_id=wallet.ecoin_id,
                grant_id=wallet.grant_id,
                grant=wallet.grant,
                created_at_ms=wallet.created_at_ms,
                expires_at_ms=wallet.expires_at_ms,
            )
        )
        session.flush()

    def wallet_session(self, session: Session, handle_sha256: bytes) -> WalletSession | None:
        row = session.scalars(
            select(WalletSessionRow).where(WalletSessionRow.handle_sha256 == handle_sha256)
        ).first()
        if row is None:
            return None
        return WalletSession(
            ecoin_id=row.ecoin_id,
            grant_id=row.grant_id,
            grant=row.grant,
            created_at_ms=row.created_at_ms,
            expires_at_ms=row.expires_at_ms,
        )

    def delete_wallet_sessions_before(self, session: Session, now_ms: int) -> int:
        """Forget sessions that expired before ``now_ms``; how many."""
        result = session.execute(
            delete(WalletSessionRow)
            .where(WalletSessionRow.expires_at_ms <= now_ms)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result)


# -- refunds on their way back (shown to the reader) ---------------------------------


def set_refund_pending(session: Session, ecoin_id: str, units: int, now_ms: int) -> None:
    """Remember what the broker said is on its way back to the coin's reader."""
    row = session.get(CoinRefundRow, ecoin_id, populate_existing=True)
    if row is None:
        if units:
            session.add(
                CoinRefundRow(ecoin_id=ecoin_id, refund_pending_units=units, updated_at_ms=now_ms)
            )
        return
    row.refund_pending_units = units
    row.updated_at_ms = now_ms


def refund_pending_units(session: Session, ecoin_id: str) -> int:
    found = session.scalar(
        select(CoinRefundRow.refund_pending_units).where(CoinRefundRow.ecoin_id == ecoin_id)
    )
    return int(found or 0)


# -- refunds for returned goods (netted at redemption) ---------------------------------


class VendorRefundRow(Base):
    """A refund the vendor gives for a paid click (returned goods): its signed
    VendorRefund, netted from the vendor's payout by the next redemption batch
    that can carry it (vendor/redemption.py). ``status`` is ``pending`` (not in
    a batch yet), ``batched`` (in the stored batch ``batch_id``), ``accepted``
    or ``rejected`` (final, with the reason)."""

    __tablename__ = "vendor_refunds"
    __table_args__ = (
        UniqueConstraint("refund_id", name="uq_vendor_refund_id"),
        Index("ix_vendor_refund_receipt", "ecoin_id", "receipt_to_index"),
        Index("ix_vendor_refund_status", "status"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    refund_id: Mapped[str] = mapped_column(String(64))
    ecoin_id: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(BigInteger)
    receipt_to_index: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(200))
    refund: Mapped[bytes] = mapped_column(LargeBinary)  # serialized Envelope(VendorRefund)
    status: Mapped[str] = mapped_column(String(8))
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("vendor_redemptions.batch_id"), default=None, index=True
    )
    result_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    result_detail: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    finished_at_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
