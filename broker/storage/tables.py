"""The broker's SQLAlchemy 2.0 models: the schema, unchanged since before the split.

Table and column names are the ones existing data dirs hold; a change here is
a migration. Ledger entries are immutable (an ORM update or delete of one is
refused). Repositories (the other modules of :mod:`broker.storage`) are the
only code that queries these tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AccountRow",
    "Base",
    "ClaimRangeRow",
    "ClaimRow",
    "CoinRow",
    "CorrectionRow",
    "CustodyEpochRow",
    "DisputeRow",
    "EntryRow",
    "ExpiryRefundRow",
    "FlaggedReaderRow",
    "LoginFailureRow",
    "PaymentInstrumentRow",
    "PortalSessionRow",
    "PurchaseRow",
    "ReaderProfileRow",
    "ReaderRow",
    "ReaderSpendingRow",
    "ReaderTokenRow",
    "RedemptionBatchRow",
    "ServerWalletRow",
    "SpendingLimitRow",
    "TransactionRow",
    "VendorRefundRow",
    "VendorRow",
    "WalletCodeRow",
    "WalletGrantRow",
    "WalletSessionRow",
    "WalletSigninFailureRow",
    "WindowCreditRow",
    "table_names",
]


class Base(DeclarativeBase):
    pass


# -- readers and vendors ------------------------------------------------------


class ReaderRow(Base):
    __tablename__ = "readers"

    reader_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class ReaderTokenRow(Base):
    __tablename__ = "reader_tokens"

    token_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    reader_id: Mapped[str] = mapped_column(ForeignKey("readers.reader_id"), index=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)


class LoginFailureRow(Base):
    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(32), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class VendorRow(Base):
    __tablename__ = "vendors"

    vendor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The operator's fixed origin (add-vendor --origin); wins over the vendor's.
    fixed_origin: Mapped[str | None] = mapped_column(String(256))
    # SHA-256 of the one-time enrollment token; cleared when it is used.
    enrollment_token_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    vendor_token_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    grpc_address: Mapped[str] = mapped_column(String(256), default="")
    web_origin: Mapped[str] = mapped_column(String(256), default="")
    display_name: Mapped[str] = mapped_column(String(100), default="")
    # Serialized Envelope(VendorCertificate), the newest one.
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    enrolled_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    registered_at_ms: Mapped[int | None] = mapped_column(BigInteger)


# -- web portal ---------------------------------------------------------------------


class ReaderProfileRow(Base):
    """A reader's optional personal data (the portal's profile page)."""

    __tablename__ = "reader_profiles"

    reader_id: Mapped[str] = mapped_column(ForeignKey("readers.reader_id"), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    erased_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class PortalSessionRow(Base):
    """A signed-in browser session of the portal (the cookie holds the token)."""

    __tablename__ = "portal_sessions"

    session_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    reader_id: Mapped[str] = mapped_column(ForeignKey("readers.reader_id"), index=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class PaymentInstrumentRow(Base):
    """A demo payment instrument: only what a processor lets a merchant keep."""

    __tablename__ = "payment_instruments"

    # The row id orders instruments by when they were added; the public id is random.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instrument_id: Mapped[str] = mapped_column(String(32), unique=True)
    reader_id: Mapped[str] = mapped_column(ForeignKey("readers.reader_id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    brand: Mapped[str] = mapped_column(String(32))
    last4: Mapped[str] = mapped_column(String(4))
    country: Mapped[str | None] = mapped_column(String(2))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    holder_name: Mapped[str] = mapped_column(String(100))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


# -- ledger -----------------------------------------------------------------------


class AccountRow(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("kind", "owner", "currency"),)

    account_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))


class TransactionRow(Base):
    __tablename__ = "ledger_transactions"

    transaction_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)


class EntryRow(Base):
    """An immutable ledger entry; the code never updates or deletes one."""

    __tablename__ = "ledger_entries"

    entry_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.transaction_id"), index=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class CorrectionRow(Base):
    """Why a transaction was compensated (once: the original is the key)."""

    __tablename__ = "ledger_corrections"

    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.transaction_id"), primary_key=True
    )
    correction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.transaction_id"))
    reason: Mapped[str] = mapped_column(String(400))
    at_ms: Mapped[int] = mapped_column(BigInteger)


@event.listens_for(EntryRow, "before_update")
@event.listens_for(EntryRow, "before_delete")
def _entries_are_immutable(_mapper: Any, _connection: Any, target: EntryRow) -> None:
    raise AssertionError(f"ledger entry {target.entry_id} is immutable")


# -- coins and custody ------------------------------------------------------------


class CoinRow(Base):
    __tablename__ = "coins"

    ecoin_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(ForeignKey("readers.reader_id"), index=True)
    n: Mapped[int] = mapped_column(Integer)
    unit_value_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    wallet_kind: Mapped[str] = mapped_column(String(16))
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    # Serialized Envelope(Touchstone), returned byte for byte.
    touchstone: Mapped[bytes] = mapped_column(LargeBinary)
    issued_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    holder: Mapped[str | None] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(BigInteger)
    latest_index: Mapped[int] = mapped_column(Integer)
    latest_word: Mapped[bytes] = mapped_column(LargeBinary(32))
    lease_expires_ms: Mapped[int | None] = mapped_column(BigInteger)
    grant_epoch: Mapped[int | None] = mapped_column(BigInteger)
    grant_to_vendor: Mapped[str | None] = mapped_column(String(32))
    grant_expires_ms: Mapped[int | None] = mapped_column(BigInteger)


class CustodyEpochRow(Base):
    """The custody log: one row per epoch of a coin."""

    __tablename__ = "custody_log"
    __table_args__ = (UniqueConstraint("ecoin_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"))
    epoch: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str] = mapped_column(String(32))
    base_index: Mapped[int] = mapped_column(Integer)
    base_word: Mapped[bytes] = mapped_column(LargeBinary(32))
    end_index: Mapped[int | None] = mapped_column(Integer)
    end_word: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    opened_at_ms: Mapped[int] = mapped_column(BigInteger)
    opened_by: Mapped[str] = mapped_column(String(16))
    opened_from: Mapped[str | None] = mapped_column(String(32))
    closed_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    close_reason: Mapped[str | None] = mapped_column(String(16))


class PurchaseRow(Base):
    """BuyCoin idempotency: the first result per (reader, request id)."""

    __tablename__ = "purchases"
    __table_args__ = (UniqueConstraint("reader_id", "request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reader_id: Mapped[str] = mapped_column(ForeignKey("readers.reader_id"))
    request_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), unique=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.transaction_id"))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


# -- server-side wallets -------------------------------------------------------------


class ServerWalletRow(Base):
    """A server-side coin's secrets: the sealed chain and the wallet password's hash."""

    __tablename__ = "server_wallets"

    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), primary_key=True)
    # broker.seedvault: version || nonce || ChaCha20-Poly1305(seed || pebbles).
    sealed_chain: Mapped[bytes] = mapped_column(LargeBinary)
    # Argon2id of the wallet password.
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class WalletSigninFailureRow(Base):
    """A failed portal sign-in with an e-coin id (known or not)."""

    __tablename__ = "wallet_signin_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ecoin_id: Mapped[str] = mapped_column(String(32), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class WalletCodeRow(Base):
    """A one-time sign-in code, stored as SHA-256, bound to (coin, vendor)."""

    __tablename__ = "wallet_codes"

    code_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), index=True)
    vendor_id: Mapped[str] = mapped_column(String(32))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    used_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class WalletGrantRow(Base):
    """A WalletGrant the broker issued, with the units drawn under it."""

    __tablename__ = "wallet_grants"

    grant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), index=True)
    vendor_id: Mapped[str] = mapped_column(String(32))
    max_units: Mapped[int] = mapped_column(Integer)
    drawn_units: Mapped[int] = mapped_column(Integer, default=0)
    issued_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)


class WalletSessionRow(Base):
    """The coin a portal browser session signed in with (one-click sign-in later)."""

    __tablename__ = "wallet_sessions"

    session_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), index=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


# -- spending limits -------------------------------------------------------------------


class SpendingLimitRow(Base):
    """A reader's spending limits in one currency (netpay.spending)."""

    __tablename__ = "spending_limits"
    __table_args__ = (UniqueConstraint("reader_id", "currency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reader_id: Mapped[str] = mapped_column(ForeignKey("readers.reader_id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    max_click_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    max_day_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class ReaderSpendingRow(Base):
    """What a reader's server-side coins released in windows on one UTC day."""

    __tablename__ = "reader_spending"
    __table_args__ = (UniqueConstraint("reader_id", "day", "currency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reader_id: Mapped[str] = mapped_column(String(32))
    day: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    spent_minor: Mapped[int] = mapped_column(BigInteger)


# -- redemption ------------------------------------------------------------------------


class RedemptionBatchRow(Base):
    """Redeem idempotency: the first reply per (vendor, batch id)."""

    __tablename__ = "redemption_batches"
    __table_args__ = (UniqueConstraint("vendor_id", "batch_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vendor_id: Mapped[str] = mapped_column(String(32))
    batch_id: Mapped[str] = mapped_column(String(64))
    request_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    # Serialized RedeemResponse, returned byte for byte on a retry.
    response: Mapped[bytes] = mapped_column(LargeBinary)
    created_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class ClaimRow(Base):
    """An accepted claim: the span (from, to] of one epoch is paid (never twice)."""

    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("ecoin_id", "epoch", "to_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_row_id: Mapped[int] = mapped_column(ForeignKey("redemption_batches.id"), index=True)
    vendor_id: Mapped[str] = mapped_column(String(32), index=True)
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), index=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    from_index: Mapped[int] = mapped_column(Integer)
    to_index: Mapped[int] = mapped_column(Integer)
    payword: Mapped[bytes] = mapped_column(LargeBinary(32))
    paid_units: Mapped[int] = mapped_column(Integer)
    refund_units: Mapped[int] = mapped_column(Integer)
    void_units: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Serialized Envelope(Claim): the vendor's signed evidence.
    claim: Mapped[bytes] = mapped_column(LargeBinary)
    created_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class ClaimRangeRow(Base):
    """One Receipt range of an accepted claim: the reader's per-click history."""

    __tablename__ = "claim_ranges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), index=True)
    ecoin_id: Mapped[str] = mapped_column(String(32), index=True)
    from_index: Mapped[int] = mapped_column(Integer)
    to_index: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(64))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class WindowCreditRow(Base):
    """A vendor's signed WindowCredit: its refund goes back to the reader once netted."""

    __tablename__ = "window_credits"
    __table_args__ = (UniqueConstraint("ecoin_id", "epoch", "window_top"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vendor_id: Mapped[str] = mapped_column(String(32))
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), index=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    window_top: Mapped[int] = mapped_column(Integer)
    consumed_index: Mapped[int] = mapped_column(Integer)
    refund_units: Mapped[int] = mapped_column(Integer)
    # Serialized Envelope(WindowCredit).
    credit: Mapped[bytes] = mapped_column(LargeBinary)
    received_at_ms: Mapped[int] = mapped_column(BigInteger)
    # The claim that netted it (its refund was then credited to the reader).
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"), default=None)


class VendorRefundRow(Base):
    """A netted VendorRefund (goods returned): unique per (vendor, refund id)."""

    __tablename__ = "vendor_refunds"
    __table_args__ = (UniqueConstraint("vendor_id", "refund_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vendor_id: Mapped[str] = mapped_column(String(32))
    refund_id: Mapped[str] = mapped_column(String(64))
    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), index=True)
    receipt_to_index: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refund: Mapped[bytes] = mapped_column(LargeBinary)
    batch_row_id: Mapped[int] = mapped_column(ForeignKey("redemption_batches.id"))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class ExpiryRefundRow(Base):
    """A coin past expiry + grace whose unclaimed value went back to its reader (once)."""

    __tablename__ = "expiry_refunds"

    ecoin_id: Mapped[str] = mapped_column(ForeignKey("coins.ecoin_id"), primary_key=True)
    reader_id: Mapped[str] = mapped_column(String(32), index=True)
    # The coin's value no claim took (unspent, void and un-netted window words).
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    # The reader's refund balance (window credits, vendor refunds) paid out with it.
    refund_balance_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class FlaggedReaderRow(Base):
    """A reader an overlap was proved against: what they owe the broker-loss account.
    They buy no new coin until it is debited (``recovered_minor`` so far)."""

    __tablename__ = "flagged_readers"
    __table_args__ = (UniqueConstraint("reader_id", "currency"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reader_id: Mapped[str] = mapped_column(String(32), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    owed_minor: Mapped[int] = mapped_column(BigInteger)
    recovered_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class DisputeRow(Base):
    """A claim overlapping words already paid: both sides' evidence, for the operator."""

    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vendor_id: Mapped[str] = mapped_column(String(32))
    ecoin_id: Mapped[str] = mapped_column(String(32), index=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    from_index: Mapped[int] = mapped_column(Integer)
    to_index: Mapped[int] = mapped_column(Integer)
    # Serialized Envelope(Claim): the refused claim, signed by its vendor.
    claim: Mapped[bytes] = mapped_column(LargeBinary)
    # The claims already paid that it overlaps (ids in `claims`, comma-separated).
    overlaps: Mapped[str] = mapped_column(String(400))
    detail: Mapped[str] = mapped_column(String(400))
    created_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


def table_names() -> Sequence[str]:
    return sorted(Base.metadata.tables)
