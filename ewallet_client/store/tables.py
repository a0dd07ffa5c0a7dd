"""The wallet file's tables (SQLAlchemy 2.0): the schema, unchanged since version 1.

Existing wallet files keep working: same table and column names. The
repositories (one module per aggregate) read and write these rows inside a
:class:`~ewallet_client.store.unit.WalletUnit`; nothing else touches them.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from netpay.limits import DEFAULT_LIMITS

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_ORIGIN_CHARS",
    "MAX_URL_CHARS",
    "AutoloadRow",
    "Base",
    "BridgeOriginRow",
    "BridgeSpendingRow",
    "CertificateRow",
    "CoinRow",
    "OutstandingRow",
    "PebbleRow",
    "ReceiptRow",
    "SettingsRow",
    "SpendingLimitRow",
    "SpendingRow",
    "WindowRow",
    "rowcount",
]

MAX_URL_CHARS = 2048
MAX_ORIGIN_CHARS = 300
MAX_ERROR_CHARS = 300


def rowcount(result: Any) -> int:
    """The rows an UPDATE or DELETE matched (a compare-and-set won when 1)."""
    return cast(CursorResult[Any], result).rowcount


class Base(DeclarativeBase):
    pass


class SettingsRow(Base):
    """The single settings row (id 1)."""

    __tablename__ = "settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer, default=1)
    broker_addr: Mapped[str | None] = mapped_column(String(300))
    broker_id: Mapped[str | None] = mapped_column(String(32))
    broker_public_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    reader_id: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(128))
    token: Mapped[str | None] = mapped_column(String(256))
    token_expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    max_gap_units: Mapped[int] = mapped_column(Integer, default=DEFAULT_LIMITS.max_gap_units)
    max_chain_units: Mapped[int] = mapped_column(Integer, default=DEFAULT_LIMITS.max_chain_units)
    max_click_amount_minor: Mapped[int] = mapped_column(
        BigInteger, default=DEFAULT_LIMITS.max_click_amount_minor
    )
    max_skew_s: Mapped[int] = mapped_column(Integer, default=DEFAULT_LIMITS.max_skew_s)


class CoinRow(Base):
    __tablename__ = "coins"

    ecoin_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    seed: Mapped[bytes] = mapped_column(LargeBinary(32))
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    n: Mapped[int] = mapped_column(Integer)
    unit_value_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    touchstone: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    # Highest index ever put in a header (never moves down).
    index: Mapped[int] = mapped_column(Integer, default=0)
    # Highest index a vendor accepted with a verified receipt.
    accepted_index: Mapped[int] = mapped_column(Integer, default=0)
    last_vendor: Mapped[str | None] = mapped_column(String(32))


class PebbleRow(Base):
    __tablename__ = "pebbles"

    ecoin_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("coins.ecoin_id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    word: Mapped[bytes] = mapped_column(LargeBinary(32))


class ReceiptRow(Base):
    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("vendor_id", "ecoin_id", "to_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vendor_id: Mapped[str] = mapped_column(String(32))
    ecoin_id: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(BigInteger)
    from_index: Mapped[int] = mapped_column(Integer)
    to_index: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    item_id: Mapped[str] = mapped_column(String(256))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(String(MAX_URL_CHARS))
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at_ms: Mapped[int] = mapped_column(BigInteger)


class OutstandingRow(Base):
    """A header the wallet issued and has not seen accepted."""

    __tablename__ = "outstanding"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ecoin_id: Mapped[str] = mapped_column(String(32), index=True)
    prev: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer)
    vendor_id: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(MAX_URL_CHARS))
    issued_at_ms: Mapped[int] = mapped_column(BigInteger)


class CertificateRow(Base):
    """The newest verified VendorCertificate seen per vendor."""

    __tablename__ = "certificates"

    vendor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    valid_until_ms: Mapped[int] = mapped_column(BigInteger)
    fetched_at_ms: Mapped[int] = mapped_column(BigInteger)


class BridgeOriginRow(Base):
    """A web origin the reader approved for the browser bridge, with its own caps.

    A cap left NULL means "the bridge's own cap" (``netpay wallet bridge``).
    """

    __tablename__ = "bridge_origins"

    origin: Mapped[str] = mapped_column(String(MAX_ORIGIN_CHARS), primary_key=True)
    max_click_minor: Mapped[int | None] = mapped_column(BigInteger)
    max_day_minor: Mapped[int | None] = mapped_column(BigInteger)
    approved_at_ms: Mapped[int] = mapped_column(BigInteger)


class BridgeSpendingRow(Base):
    """What the bridge authorised for one origin on one UTC day, per currency."""

    __tablename__ = "bridge_spending"

    origin: Mapped[str] = mapped_column(String(MAX_ORIGIN_CHARS), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)  # days since 1970-01-01 UTC
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    spent_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)


class WindowRow(Base):
    """A cookie-cache window the wallet opened (``netpay wallet open-window``).

    ``handle`` is the vendor's cookie value: a bearer secret that spends the
    window's words. It lives only here (the file is 0600) and is erased when
    the window closes.
    """

    __tablename__ = "windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vendor_id: Mapped[str] = mapped_column(String(32), index=True)
    origin: Mapped[str] = mapped_column(String(MAX_ORIGIN_CHARS), index=True)
    ecoin_id: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16))
    window_from: Mapped[int] = mapped_column(Integer)
    window_top: Mapped[int] = mapped_column(Integer)
    unit_value_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    consumed_index: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int | None] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    handle: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(MAX_URL_CHARS))
    opened_at_ms: Mapped[int] = mapped_column(BigInteger)
    closed_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    refund_units: Mapped[int | None] = mapped_column(Integer)
    close_reason: Mapped[str | None] = mapped_column(String(16))
    credit: Mapped[bytes | None] = mapped_column(LargeBinary)


class SpendingLimitRow(Base):
    """The reader's spending limits in one currency (NULL: no limit)."""

    __tablename__ = "spending_limits"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    max_click_minor: Mapped[int | None] = mapped_column(BigInteger)
    max_day_minor: Mapped[int | None] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class SpendingRow(Base):
    """What the wallet's own payments spent on one UTC day, per currency.

    Counted for every payment (limits or not), so a daily limit set at noon
    counts the morning; raised with a compare-and-set in the transaction that
    moves the coin's index (:class:`~ewallet_client.store.spending.SpendingRepo`).
    """

    __tablename__ = "spending"

    day: Mapped[int] = mapped_column(Integer, primary_key=True)  # days since 1970-01-01 UTC
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    spent_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    payments: Mapped[int] = mapped_column(Integer, default=0)


class AutoloadRow(Base):
    """The reader's standing auto-load agreement in one currency.

    ``enabled`` False (``--off``) keeps the row, so a purchase still pending
    (``last_request_id``) is completed after the next payment all the same.
    """

    __tablename__ = "autoload"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    below_minor: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(Integer)
    unit_value_minor: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    # The request id of the latest coin this agreement bought (or is buying).
    last_request_id: Mapped[str | None] = mapped_column(String(64))
    last_attempt_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_ecoin_id: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR_CHARS))
