"""The vendor's tables (SQLAlchemy 2.0 models); the schema of every data dir.

``vendor_coins`` (one row per coin this vendor has held: the current epoch,
its state, the spent index and word, the lease), ``vendor_clicks`` (the click
log: one row per accepted payword, with the signed Receipt, unique on
``(ecoin_id, to_index)``), ``vendor_coin_refunds`` (window credit on its way
back to a coin's reader), ``vendor_windows`` (one row per window: the
prepaid words ``(window_from, window_top]``, the consumed index, the SHA-256
of its cookie handle, the WindowCredit once closed), ``vendor_window_clicks``
(one row per click paid from a window, with its Receipt, unique on
``(window_id, to_index)``), ``vendor_wallet_sessions`` (one row per reader
signed in with a server-side wallet: the SHA-256 of the ``netpay_wallet``
cookie handle, the coin and the broker's WalletGrant), and redemption's
``vendor_redemptions``, ``vendor_claims``, ``vendor_redemption_lock`` and
``vendor_refunds``.

Table and column names are the schema of existing data dirs: they do not
change. A column added later is nullable and listed in ``_ADDED_COLUMNS``,
which every ``create_all`` adds to an existing data dir. The repositories next
to this module are the only code that reads or writes these rows.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Connection,
    CursorResult,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "ClaimStateRow",
    "ClickRow",
    "CoinRefundRow",
    "CoinRow",
    "RedemptionBatchRow",
    "RedemptionLockRow",
    "VendorRefundRow",
    "WalletSessionRow",
    "WindowClickRow",
    "WindowRow",
    "rowcount",
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
    # Revision 1.1: the coin's index before the opening payment, the void_from of
    # the first click's Receipt. NULL in rows from before (added by
    # _add_missing_columns): that window's first click has no void words.
    void_from: Mapped[int | None] = mapped_column(Integer, default=None)


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


class VendorRefundRow(Base):
    """A refund the vendor gives for a paid click (returned goods): its signed
    VendorRefund, netted from the vendor's payout by the next redemption batch
    that can carry it (vendor/services/redeem.py). ``status`` is ``pending``
    (not in a batch yet), ``batched`` (in the stored batch ``batch_id``), ``accepted``
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


# Columns added to a table after data dirs with it existed: create_all makes only
# missing tables, so each is added here (nullable, old rows keep NULL).
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("vendor_windows", "void_from", "INTEGER"),)


@event.listens_for(Base.metadata, "after_create")
def _add_missing_columns(target: object, connection: Connection, **kw: object) -> None:
    """After every ``create_all``: give an existing data dir the columns added since
    it was made."""
    inspector = inspect(connection)
    for table, column, ddl in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


def rowcount(result: object) -> int:
    """The rows an ``UPDATE`` or ``DELETE`` matched: a compare-and-set won when 1."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
