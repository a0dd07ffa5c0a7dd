"""The broker's storage: SQLAlchemy 2.0 models and repositories.

Portable SQL only (SQLite by default, PostgreSQL at scale): every custody
change is a compare-and-set ``UPDATE ... WHERE`` whose row count is checked,
rows that a use case will change are read ``FOR UPDATE`` (ignored by SQLite,
where ``BEGIN IMMEDIATE`` already serialises writers), and uniqueness is
enforced by constraints. Engines are built by the server at start, never at
import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CursorResult,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from broker.domain import (
    AccountKind,
    AccountRef,
    CoinRecordView,
    CoinState,
    EpochOpening,
    EpochView,
    IndexedWord,
    LedgerEntry,
    Transaction,
    assert_balanced,
)
from netpay.errors import AlreadyExists, Conflict
from netpay.spending import SpendingLimits
from netpay.sqlstore import Unit, UnitOfWork

__all__ = [
    "AccountRow",
    "Base",
    "BrokerStore",
    "ClaimRangeRow",
    "ClaimRow",
    "CoinRepo",
    "CoinRow",
    "CorrectionRow",
    "CustodyEpochRow",
    "DisputeRow",
    "EntryRow",
    "ExpiryRefundRow",
    "FlaggedReaderRow",
    "LedgerRepo",
    "LoginFailureRow",
    "PaymentInstrumentRow",
    "PortalRepo",
    "PortalSessionRow",
    "PurchaseRepo",
    "PurchaseRow",
    "ReaderProfileRow",
    "ReaderRepo",
    "ReaderRow",
    "ReaderSpendingRow",
    "ReaderTokenRow",
    "RedemptionBatchRow",
    "RedemptionRepo",
    "Repos",
    "ServerWalletRow",
    "SpendingLimitRow",
    "SpendingRepo",
    "StoredClaim",
    "StoredCoin",
    "StoredCredit",
    "StoredRange",
    "TransactionRow",
    "VendorRefundRow",
    "VendorRepo",
    "VendorRow",
    "WalletCodeRow",
    "WalletGrantRow",
    "WalletRepo",
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


# -- repositories -------------------------------------------------------------------


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


class ReaderRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, reader_id: str, username: str, password_hash: str, now_ms: int) -> None:
        self._s.add(
            ReaderRow(
                reader_id=reader_id,
                username=username,
                password_hash=password_hash,
                created_at_ms=now_ms,
            )
        )
        self._s.flush()

    def by_username(self, username: str) -> ReaderRow | None:
        return self._s.scalars(select(ReaderRow).where(ReaderRow.username == username)).first()

    def get(self, reader_id: str, *, for_update: bool = False) -> ReaderRow | None:
        stmt = select(ReaderRow).where(ReaderRow.reader_id == reader_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self._s.scalars(stmt).first()

    def set_password_hash(self, reader_id: str, old_hash: str, new_hash: str) -> None:
        """Compare-and-set the password hash; Conflict when it changed meanwhile."""
        result = self._s.execute(
            update(ReaderRow)
            .where(ReaderRow.reader_id == reader_id, ReaderRow.password_hash == old_hash)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) != 1:
            raise Conflict("the password changed meanwhile")

    def delete_tokens(self, reader_id: str) -> None:
        """Revoke every API token of the reader."""
        self._s.execute(delete(ReaderTokenRow).where(ReaderTokenRow.reader_id == reader_id))

    def add_token(self, token_sha256: bytes, reader_id: str, now_ms: int, expires_ms: int) -> None:
        self._s.add(
            ReaderTokenRow(
                token_sha256=token_sha256,
                reader_id=reader_id,
                created_at_ms=now_ms,
                expires_at_ms=expires_ms,
            )
        )

    def reader_for_token(self, token_sha256: bytes, now_ms: int) -> str | None:
        return self._s.scalars(
            select(ReaderTokenRow.reader_id).where(
                ReaderTokenRow.token_sha256 == token_sha256,
                ReaderTokenRow.expires_at_ms > now_ms,
            )
        ).first()

    def prune_tokens(self, reader_id: str, now_ms: int) -> None:
        self._s.execute(
            delete(ReaderTokenRow).where(
                ReaderTokenRow.reader_id == reader_id, ReaderTokenRow.expires_at_ms <= now_ms
            )
        )

    def recent_failures(self, username: str, since_ms: int) -> list[int]:
        """Times of the failed logins for ``username`` since ``since_ms``, oldest first."""
        return list(
            self._s.scalars(
                select(LoginFailureRow.at_ms)
                .where(LoginFailureRow.username == username, LoginFailureRow.at_ms >= since_ms)
                .order_by(LoginFailureRow.at_ms)
            )
        )

    def add_failure(self, username: str, now_ms: int) -> None:
        self._s.add(LoginFailureRow(username=username, at_ms=now_ms))

    def clear_failures(self, username: str) -> None:
        self._s.execute(delete(LoginFailureRow).where(LoginFailureRow.username == username))

    def prune_failures(self, before_ms: int) -> None:
        self._s.execute(delete(LoginFailureRow).where(LoginFailureRow.at_ms < before_ms))


class VendorRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, vendor_id: str, *, for_update: bool = False) -> VendorRow | None:
        stmt = select(VendorRow).where(VendorRow.vendor_id == vendor_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self._s.scalars(stmt).first()

    def add(self, row: VendorRow) -> None:
        self._s.add(row)
        self._s.flush()

    def by_enrollment_token(self, token_sha256: bytes) -> VendorRow | None:
        return self._s.scalars(
            select(VendorRow)
            .where(VendorRow.enrollment_token_sha256 == token_sha256)
            .with_for_update()
        ).first()

    def by_vendor_token(self, token_sha256: bytes) -> VendorRow | None:
        return self._s.scalars(
            select(VendorRow).where(VendorRow.vendor_token_sha256 == token_sha256)
        ).first()

    def public_key(self, vendor_id: str) -> bytes | None:
        return self._s.scalars(
            select(VendorRow.public_key).where(VendorRow.vendor_id == vendor_id)
        ).first()

    def with_certificates(self, limit: int) -> list[VendorRow]:
        """Vendors that have been certified at least once, by id."""
        return list(
            self._s.scalars(
                select(VendorRow)
                .where(VendorRow.certificate.is_not(None))
                .order_by(VendorRow.vendor_id)
                .limit(limit)
            )
        )

    def flush(self) -> None:
        self._s.flush()


class LedgerRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def account_id(self, ref: AccountRef, *, for_update: bool = False) -> int:
        """The account's id, made on first use."""
        stmt = select(AccountRow.account_id).where(
            AccountRow.kind == ref.kind.value,
            AccountRow.owner == ref.owner,
            AccountRow.currency == ref.currency,
        )
        if for_update:
            stmt = stmt.with_for_update()
        found = self._s.scalars(stmt).first()
        if found is not None:
            return found
        row = AccountRow(kind=ref.kind.value, owner=ref.owner, currency=ref.currency)
        self._s.add(row)
        self._s.flush()
        return row.account_id

    def balance_minor(self, ref: AccountRef, *, for_update: bool = False) -> int:
        """The sum of the account's entries (locks the account row when asked)."""
        account_id = self.account_id(ref, for_update=for_update)
        total = self._s.scalar(
            select(func.coalesce(func.sum(EntryRow.amount_minor), 0)).where(
                EntryRow.account_id == account_id
            )
        )
        return int(total or 0)

    def balances_of(self, kind: AccountKind, owner: str) -> dict[str, int]:
        """Per currency, the balance of each account of ``owner``."""
        rows = self._s.execute(
            select(AccountRow.currency, func.coalesce(func.sum(EntryRow.amount_minor), 0))
            .select_from(AccountRow)
            .outerjoin(EntryRow, EntryRow.account_id == AccountRow.account_id)
            .where(AccountRow.kind == kind.value, AccountRow.owner == owner)
            .group_by(AccountRow.currency)
            .order_by(AccountRow.currency)
        ).all()
        return {currency: int(total) for currency, total in rows}

    def post(self, tx: Transaction) -> int:
        """Write a balanced transaction; returns its id."""
        assert_balanced(tx.entries)
        row = TransactionRow(kind=tx.kind, idempotency_key=tx.idempotency_key, at_ms=tx.at_ms)
        self._s.add(row)
        self._s.flush()
        for entry in tx.entries:
            self._s.add(
                EntryRow(
                    transaction_id=row.transaction_id,
                    account_id=self.account_id(entry.account),
                    currency=entry.account.currency,
                    amount_minor=entry.amount_minor,
                )
            )
        self._s.flush()
        return row.transaction_id

    def compensate(self, transaction_id: int, *, reason: str, at_ms: int) -> int:
        """Correct a posted transaction the only way the ledger allows: a new one with
        every entry negated (kind ``correction``, key ``correction:<id>``, so it is
        posted at most once). Entries themselves are never changed. Returns its id."""
        original = self._s.get(TransactionRow, transaction_id)
        if original is None:
            raise Conflict(f"no ledger transaction {transaction_id}")
        rows = self._s.execute(
            select(AccountRow, EntryRow.amount_minor)
            .join(EntryRow, EntryRow.account_id == AccountRow.account_id)
            .where(EntryRow.transaction_id == transaction_id)
            .order_by(EntryRow.entry_id)
        ).all()
        entries = tuple(
            LedgerEntry(
                AccountRef(AccountKind(account.kind), account.owner, account.currency), -amount
            )
            for account, amount in rows
        )
        correction_id = self.post(
            Transaction("correction", f"correction:{transaction_id}", at_ms, entries)
        )
        self._s.add(
            CorrectionRow(
                transaction_id=transaction_id,
                correction_id=correction_id,
                reason=reason[:400],
                at_ms=at_ms,
            )
        )
        self._s.flush()
        return correction_id

    def unbalanced_transactions(self) -> list[tuple[int, str]]:
        """Every (transaction id, currency) whose entries do not sum to 0 (should be none)."""
        rows = self._s.execute(
            select(EntryRow.transaction_id, EntryRow.currency)
            .group_by(EntryRow.transaction_id, EntryRow.currency)
            .having(func.sum(EntryRow.amount_minor) != 0)
        ).all()
        return [(int(t), str(c)) for t, c in rows]


@dataclass(frozen=True)
class StoredCoin:
    view: CoinRecordView
    owner: str
    currency: str
    wallet_kind: str
    touchstone: bytes


def _coin_view(row: CoinRow) -> CoinRecordView:
    return CoinRecordView(
        ecoin_id=row.ecoin_id,
        n=row.n,
        unit_value_minor=row.unit_value_minor,
        expires_at_ms=row.expires_at_ms,
        state=CoinState(row.state),
        frozen=row.frozen,
        holder=row.holder,
        epoch=row.epoch,
        latest=IndexedWord(row.latest_index, row.latest_word),
        lease_expires_ms=row.lease_expires_ms,
        grant_epoch=row.grant_epoch,
        grant_to_vendor=row.grant_to_vendor,
        grant_expires_ms=row.grant_expires_ms,
    )


def _stored(row: CoinRow) -> StoredCoin:
    return StoredCoin(_coin_view(row), row.owner, row.currency, row.wallet_kind, row.touchstone)


def _epoch_view(row: CustodyEpochRow) -> EpochView:
    end = None
    forced_end = None
    if row.end_index is not None and row.end_word is not None:
        end = IndexedWord(row.end_index, row.end_word)
    elif row.end_index is not None:
        forced_end = row.end_index  # force-closed: the broker never saw that word
    return EpochView(
        epoch=row.epoch,
        holder=row.holder,
        base=IndexedWord(row.base_index, row.base_word),
        opened_by=EpochOpening(row.opened_by),
        opened_from=row.opened_from,
        end=end,
        forced_end=forced_end,
    )


class CoinRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add(
        self,
        coin: CoinRecordView,
        *,
        owner: str,
        currency: str,
        wallet_kind: str,
        root: bytes,
        touchstone: bytes,
        issued_at_ms: int,
    ) -> None:
        assert coin.state is CoinState.FREE and coin.epoch == 0 and coin.latest.index == 0
        self._s.add(
            CoinRow(
                ecoin_id=coin.ecoin_id,
                owner=owner,
                n=coin.n,
                unit_value_minor=coin.unit_value_minor,
                currency=currency,
                wallet_kind=wallet_kind,
                root=root,
                touchstone=touchstone,
                issued_at_ms=issued_at_ms,
                expires_at_ms=coin.expires_at_ms,
                state=coin.state.value,
                frozen=coin.frozen,
                holder=None,
                epoch=0,
                latest_index=0,
                latest_word=coin.latest.word,
            )
        )
        self._s.flush()

    def get(self, ecoin_id: str, *, for_update: bool = False) -> StoredCoin | None:
        stmt = (
            select(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id)
            .execution_options(populate_existing=True)
        )
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.scalars(stmt).first()
        return None if row is None else _stored(row)

    def exists(self, ecoin_id: str) -> bool:
        found = self._s.scalars(
            select(CoinRow.ecoin_id).where(CoinRow.ecoin_id == ecoin_id)
        ).first()
        return found is not None

    def list_for_owner(self, owner: str, limit: int) -> list[StoredCoin]:
        rows = self._s.scalars(
            select(CoinRow)
            .where(CoinRow.owner == owner)
            .order_by(CoinRow.issued_at_ms.desc(), CoinRow.ecoin_id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        return [_stored(row) for row in rows]

    def apply(self, before: CoinRecordView, after: CoinRecordView) -> None:
        """Compare-and-set the custody columns; Conflict when the row moved meanwhile."""
        assert before.ecoin_id == after.ecoin_id
        result = self._s.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == before.ecoin_id,
                CoinRow.epoch == before.epoch,
                CoinRow.state == before.state.value,
                CoinRow.latest_index == before.latest.index,
            )
            .values(
                state=after.state.value,
                frozen=after.frozen,
                holder=after.holder,
                epoch=after.epoch,
                latest_index=after.latest.index,
                latest_word=after.latest.word,
                lease_expires_ms=after.lease_expires_ms,
                grant_epoch=after.grant_epoch,
                grant_to_vendor=after.grant_to_vendor,
                grant_expires_ms=after.grant_expires_ms,
            )
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) != 1:
            raise Conflict("the coin changed meanwhile; read it again")

    def epoch(self, ecoin_id: str, epoch: int) -> EpochView | None:
        row = self._s.scalars(
            select(CustodyEpochRow)
            .where(CustodyEpochRow.ecoin_id == ecoin_id, CustodyEpochRow.epoch == epoch)
            .execution_options(populate_existing=True)
        ).first()
        return None if row is None else _epoch_view(row)

    def epochs(self, ecoin_id: str) -> list[EpochView]:
        rows = self._s.scalars(
            select(CustodyEpochRow)
            .where(CustodyEpochRow.ecoin_id == ecoin_id)
            .order_by(CustodyEpochRow.epoch)
            .execution_options(populate_existing=True)
        )
        return [_epoch_view(row) for row in rows]

    def epochs_of(self, ecoin_ids: Sequence[str]) -> dict[str, list[EpochView]]:
        """The custody log of each coin in ``ecoin_ids``, oldest epoch first."""
        found: dict[str, list[EpochView]] = {ecoin_id: [] for ecoin_id in ecoin_ids}
        if not found:
            return found
        rows = self._s.scalars(
            select(CustodyEpochRow)
            .where(CustodyEpochRow.ecoin_id.in_(list(found)))
            .order_by(CustodyEpochRow.ecoin_id, CustodyEpochRow.epoch)
            .execution_options(populate_existing=True)
        )
        for row in rows:
            found[row.ecoin_id].append(_epoch_view(row))
        return found

    def open_epoch(self, ecoin_id: str, epoch: EpochView, now_ms: int) -> None:
        assert epoch.end is None
        self._s.add(
            CustodyEpochRow(
                ecoin_id=ecoin_id,
                epoch=epoch.epoch,
                holder=epoch.holder,
                base_index=epoch.base.index,
                base_word=epoch.base.word,
                opened_at_ms=now_ms,
                opened_by=epoch.opened_by.value,
                opened_from=epoch.opened_from,
            )
        )
        self._s.flush()

    def close_epoch(
        self,
        ecoin_id: str,
        epoch: int,
        end: IndexedWord | int,
        now_ms: int,
        reason: EpochOpening,
    ) -> None:
        """Close an open epoch at ``end`` (compare-and-set on its still being open);
        a bare index for a force-closed epoch, whose end word nobody showed."""
        index, word = (end, None) if isinstance(end, int) else (end.index, end.word)
        result = self._s.execute(
            update(CustodyEpochRow)
            .where(
                CustodyEpochRow.ecoin_id == ecoin_id,
                CustodyEpochRow.epoch == epoch,
                CustodyEpochRow.end_index.is_(None),
            )
            .values(
                end_index=index,
                end_word=word,
                closed_at_ms=now_ms,
                close_reason=reason.value,
            )
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) != 1:
            raise Conflict(f"epoch {epoch} is not open")


class PurchaseRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, reader_id: str, request_id: str) -> PurchaseRow | None:
        return self._s.scalars(
            select(PurchaseRow).where(
                PurchaseRow.reader_id == reader_id, PurchaseRow.request_id == request_id
            )
        ).first()

    def of_coins(self, ecoin_ids: Sequence[str]) -> list[PurchaseRow]:
        if not ecoin_ids:
            return []
        return list(
            self._s.scalars(select(PurchaseRow).where(PurchaseRow.ecoin_id.in_(list(ecoin_ids))))
        )

    def add(self, row: PurchaseRow) -> None:
        self._s.add(row)
        self._s.flush()


class PortalRepo:
    """Profiles, browser sessions and payment instruments of the web portal."""

    def __init__(self, session: Session) -> None:
        self._s = session

    # profiles

    def profile(self, reader_id: str) -> ReaderProfileRow | None:
        return self._s.scalars(
            select(ReaderProfileRow).where(ReaderProfileRow.reader_id == reader_id)
        ).first()

    def save_profile(
        self,
        reader_id: str,
        display_name: str | None,
        email: str | None,
        now_ms: int,
        *,
        erased: bool = False,
    ) -> None:
        row = self.profile(reader_id)
        if row is None:
            row = ReaderProfileRow(reader_id=reader_id)
            self._s.add(row)
        row.display_name = display_name
        row.email = email
        row.updated_at_ms = now_ms
        row.erased_at_ms = now_ms if erased else None
        self._s.flush()

    # sessions

    def add_session(
        self, session_sha256: bytes, reader_id: str, now_ms: int, expires_ms: int
    ) -> None:
        self._s.add(
            PortalSessionRow(
                session_sha256=session_sha256,
                reader_id=reader_id,
                created_at_ms=now_ms,
                expires_at_ms=expires_ms,
            )
        )
        self._s.flush()

    def session_reader(self, session_sha256: bytes, now_ms: int) -> str | None:
        return self._s.scalars(
            select(PortalSessionRow.reader_id).where(
                PortalSessionRow.session_sha256 == session_sha256,
                PortalSessionRow.expires_at_ms > now_ms,
            )
        ).first()

    def delete_session(self, session_sha256: bytes) -> None:
        self._s.execute(
            delete(PortalSessionRow).where(PortalSessionRow.session_sha256 == session_sha256)
        )

    def delete_sessions(self, reader_id: str, *, keep: bytes | None = None) -> None:
        """End every session of the reader, except ``keep``."""
        stmt = delete(PortalSessionRow).where(PortalSessionRow.reader_id == reader_id)
        if keep is not None:
            stmt = stmt.where(PortalSessionRow.session_sha256 != keep)
        self._s.execute(stmt)

    def prune_sessions(self, now_ms: int) -> None:
        self._s.execute(delete(PortalSessionRow).where(PortalSessionRow.expires_at_ms <= now_ms))

    # payment instruments

    def instruments(self, reader_id: str) -> list[PaymentInstrumentRow]:
        return list(
            self._s.scalars(
                select(PaymentInstrumentRow)
                .where(PaymentInstrumentRow.reader_id == reader_id)
                .order_by(PaymentInstrumentRow.id)
                .execution_options(populate_existing=True)
            )
        )

    def add_instrument(self, row: PaymentInstrumentRow) -> None:
        self._s.add(row)
        self._s.flush()

    def delete_instrument(self, reader_id: str, instrument_id: str) -> bool:
        result = self._s.execute(
            delete(PaymentInstrumentRow).where(
                PaymentInstrumentRow.reader_id == reader_id,
                PaymentInstrumentRow.instrument_id == instrument_id,
            )
        )
        return _rowcount(result) == 1

    def delete_instruments(self, reader_id: str) -> None:
        self._s.execute(
            delete(PaymentInstrumentRow).where(PaymentInstrumentRow.reader_id == reader_id)
        )

    def set_default(self, reader_id: str, instrument_id: str) -> bool:
        """Make one instrument the default (and no other); False if it is not the reader's."""
        self._s.execute(
            update(PaymentInstrumentRow)
            .where(
                PaymentInstrumentRow.reader_id == reader_id,
                PaymentInstrumentRow.instrument_id != instrument_id,
            )
            .values(is_default=False)
            .execution_options(synchronize_session=False)
        )
        result = self._s.execute(
            update(PaymentInstrumentRow)
            .where(
                PaymentInstrumentRow.reader_id == reader_id,
                PaymentInstrumentRow.instrument_id == instrument_id,
            )
            .values(is_default=True)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1


class WalletRepo:
    """Server-side wallets: sealed chains, sign-in failures, codes, grants, sessions."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, row: ServerWalletRow) -> None:
        self._s.add(row)
        self._s.flush()

    def get(self, ecoin_id: str) -> ServerWalletRow | None:
        return self._s.scalars(
            select(ServerWalletRow).where(ServerWalletRow.ecoin_id == ecoin_id)
        ).first()

    # sign-in failures

    def recent_failures(self, ecoin_id: str, since_ms: int) -> list[int]:
        return list(
            self._s.scalars(
                select(WalletSigninFailureRow.at_ms)
                .where(
                    WalletSigninFailureRow.ecoin_id == ecoin_id,
                    WalletSigninFailureRow.at_ms >= since_ms,
                )
                .order_by(WalletSigninFailureRow.at_ms)
            )
        )

    def add_failure(self, ecoin_id: str, now_ms: int) -> None:
        self._s.add(WalletSigninFailureRow(ecoin_id=ecoin_id, at_ms=now_ms))

    def clear_failures(self, ecoin_id: str) -> None:
        self._s.execute(
            delete(WalletSigninFailureRow).where(WalletSigninFailureRow.ecoin_id == ecoin_id)
        )

    def prune_failures(self, before_ms: int) -> None:
        self._s.execute(
            delete(WalletSigninFailureRow).where(WalletSigninFailureRow.at_ms < before_ms)
        )

    # one-time codes

    def add_code(self, row: WalletCodeRow, now_ms: int) -> None:
        self._s.execute(delete(WalletCodeRow).where(WalletCodeRow.expires_at_ms <= now_ms))
        self._s.add(row)
        self._s.flush()

    def use_code(self, code_sha256: bytes, vendor_id: str, now_ms: int) -> str | None:
        """Compare-and-set: mark the caller's live, unused code used; its coin, or None."""
        ecoin_id = self._s.scalars(
            select(WalletCodeRow.ecoin_id).where(
                WalletCodeRow.code_sha256 == code_sha256,
                WalletCodeRow.vendor_id == vendor_id,
                WalletCodeRow.used_at_ms.is_(None),
                WalletCodeRow.expires_at_ms > now_ms,
            )
        ).first()
        if ecoin_id is None:
            return None
        result = self._s.execute(
            update(WalletCodeRow)
            .where(
                WalletCodeRow.code_sha256 == code_sha256,
                WalletCodeRow.vendor_id == vendor_id,
                WalletCodeRow.used_at_ms.is_(None),
                WalletCodeRow.expires_at_ms > now_ms,
            )
            .values(used_at_ms=now_ms)
            .execution_options(synchronize_session=False)
        )
        return ecoin_id if _rowcount(result) == 1 else None

    # grants

    def add_grant(self, row: WalletGrantRow) -> None:
        self._s.add(row)
        self._s.flush()

    def grant(self, grant_id: str) -> WalletGrantRow | None:
        return self._s.scalars(
            select(WalletGrantRow)
            .where(WalletGrantRow.grant_id == grant_id)
            .execution_options(populate_existing=True)
        ).first()

    def draw_from_grant(self, grant_id: str, drawn_before: int, units: int) -> None:
        """Compare-and-set the grant's drawn units; Conflict when it moved meanwhile."""
        result = self._s.execute(
            update(WalletGrantRow)
            .where(
                WalletGrantRow.grant_id == grant_id,
                WalletGrantRow.drawn_units == drawn_before,
                WalletGrantRow.drawn_units + units <= WalletGrantRow.max_units,
            )
            .values(drawn_units=drawn_before + units)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) != 1:
            raise Conflict("the wallet grant changed meanwhile; try again")

    # browser sessions

    def add_session(self, row: WalletSessionRow, now_ms: int) -> None:
        self._s.execute(delete(WalletSessionRow).where(WalletSessionRow.expires_at_ms <= now_ms))
        self._s.add(row)
        self._s.flush()

    def session_coin(self, session_sha256: bytes, now_ms: int) -> str | None:
        return self._s.scalars(
            select(WalletSessionRow.ecoin_id).where(
                WalletSessionRow.session_sha256 == session_sha256,
                WalletSessionRow.expires_at_ms > now_ms,
            )
        ).first()

    def delete_session(self, session_sha256: bytes) -> None:
        self._s.execute(
            delete(WalletSessionRow).where(WalletSessionRow.session_sha256 == session_sha256)
        )


@dataclass(frozen=True)
class StoredClaim:
    claim_id: int
    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    paid_units: int
    refund_units: int
    void_units: int
    amount_minor: int
    currency: str
    created_at_ms: int
    batch_id: str


@dataclass(frozen=True)
class StoredRange:
    claim_id: int
    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    item_id: str
    time_ms: int
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class StoredCredit:
    vendor_id: str
    ecoin_id: str
    epoch: int
    window_top: int
    consumed_index: int
    refund_units: int
    received_at_ms: int
    claim_id: int | None


class RedemptionRepo:
    """Batches, claims, their ranges, window credits and vendor refunds."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def batch(self, vendor_id: str, batch_id: str) -> RedemptionBatchRow | None:
        return self._s.scalars(
            select(RedemptionBatchRow).where(
                RedemptionBatchRow.vendor_id == vendor_id,
                RedemptionBatchRow.batch_id == batch_id,
            )
        ).first()

    def add_batch(self, vendor_id: str, batch_id: str, request_sha256: bytes, now_ms: int) -> int:
        row = RedemptionBatchRow(
            vendor_id=vendor_id,
            batch_id=batch_id,
            request_sha256=request_sha256,
            response=b"",
            created_at_ms=now_ms,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def finish_batch(self, batch_row_id: int, response: bytes) -> None:
        self._s.execute(
            update(RedemptionBatchRow)
            .where(RedemptionBatchRow.id == batch_row_id)
            .values(response=response)
            .execution_options(synchronize_session=False)
        )

    def paid_spans(self, ecoin_id: str) -> list[tuple[int, int, int]]:
        """``(epoch, from, to)`` of every accepted claim of the coin."""
        rows = self._s.execute(
            select(ClaimRow.epoch, ClaimRow.from_index, ClaimRow.to_index)
            .where(ClaimRow.ecoin_id == ecoin_id)
            .order_by(ClaimRow.from_index)
        ).all()
        return [(int(e), int(f), int(t)) for e, f, t in rows]

    def overlapping_claims(self, ecoin_id: str, from_index: int, to_index: int) -> list[int]:
        return list(
            self._s.scalars(
                select(ClaimRow.id).where(
                    ClaimRow.ecoin_id == ecoin_id,
                    ClaimRow.from_index < to_index,
                    ClaimRow.to_index > from_index,
                )
            )
        )

    def coins_due_for_refund(self, before_expiry_ms: int, limit: int) -> list[str]:
        """Coins that expired before ``before_expiry_ms`` and were not refunded yet."""
        return list(
            self._s.scalars(
                select(CoinRow.ecoin_id)
                .outerjoin(ExpiryRefundRow, ExpiryRefundRow.ecoin_id == CoinRow.ecoin_id)
                .where(
                    CoinRow.expires_at_ms <= before_expiry_ms, ExpiryRefundRow.ecoin_id.is_(None)
                )
                .order_by(CoinRow.expires_at_ms, CoinRow.ecoin_id)
                .limit(limit)
            )
        )

    def expiry_refund(self, ecoin_id: str) -> ExpiryRefundRow | None:
        return self._s.get(ExpiryRefundRow, ecoin_id)

    def add_expiry_refund(self, row: ExpiryRefundRow) -> None:
        self._s.add(row)
        self._s.flush()

    def claimed_value(self, ecoin_id: str) -> tuple[int, int]:
        """``(claimed amount, netted window-credit units)`` of a coin."""
        claimed = self._s.scalar(
            select(func.coalesce(func.sum(ClaimRow.amount_minor), 0)).where(
                ClaimRow.ecoin_id == ecoin_id
            )
        )
        netted = self._s.scalar(
            select(func.coalesce(func.sum(WindowCreditRow.refund_units), 0)).where(
                WindowCreditRow.ecoin_id == ecoin_id, WindowCreditRow.claim_id.is_not(None)
            )
        )
        return int(claimed or 0), int(netted or 0)

    def flags(self, reader_id: str, *, for_update: bool = False) -> list[FlaggedReaderRow]:
        stmt = select(FlaggedReaderRow).where(FlaggedReaderRow.reader_id == reader_id)
        if for_update:
            stmt = stmt.with_for_update()
        return list(self._s.scalars(stmt))

    def flag(self, reader_id: str, currency: str, owed_minor: int, now_ms: int) -> None:
        """Add ``owed_minor`` to what the reader owes the broker-loss account."""
        row = self._s.scalars(
            select(FlaggedReaderRow)
            .where(FlaggedReaderRow.reader_id == reader_id, FlaggedReaderRow.currency == currency)
            .with_for_update()
        ).first()
        if row is None:
            self._s.add(
                FlaggedReaderRow(
                    reader_id=reader_id,
                    currency=currency,
                    owed_minor=owed_minor,
                    recovered_minor=0,
                    updated_at_ms=now_ms,
                )
            )
        else:
            row.owed_minor += owed_minor
            row.updated_at_ms = now_ms
        self._s.flush()

    def add_dispute(self, row: DisputeRow) -> None:
        self._s.add(row)
        self._s.flush()

    def claimed_words(self, ecoin_id: str) -> list[IndexedWord]:
        rows = self._s.execute(
            select(ClaimRow.to_index, ClaimRow.payword).where(ClaimRow.ecoin_id == ecoin_id)
        ).all()
        return [IndexedWord(int(i), bytes(w)) for i, w in rows]

    def add_claim(self, row: ClaimRow, ranges: Sequence[ClaimRangeRow]) -> int:
        self._s.add(row)
        self._s.flush()
        for r in ranges:
            r.claim_id = row.id
            self._s.add(r)
        self._s.flush()
        return row.id

    def credits(self, ecoin_id: str, epoch: int) -> list[StoredCredit]:
        rows = self._s.scalars(
            select(WindowCreditRow)
            .where(WindowCreditRow.ecoin_id == ecoin_id, WindowCreditRow.epoch == epoch)
            .order_by(WindowCreditRow.window_top)
        )
        return [_credit(row) for row in rows]

    def credits_of(self, ecoin_ids: Sequence[str]) -> list[StoredCredit]:
        """Every kept window credit of the coins (all epochs)."""
        if not ecoin_ids:
            return []
        rows = self._s.scalars(
            select(WindowCreditRow)
            .where(WindowCreditRow.ecoin_id.in_(list(ecoin_ids)))
            .order_by(WindowCreditRow.id)
        )
        return [_credit(row) for row in rows]

    def add_credit(self, row: WindowCreditRow) -> bool:
        """Keep a credit once; False when one with its (coin, epoch, top) is already kept
        (the caller compares the two)."""
        found = self._s.scalars(
            select(WindowCreditRow).where(
                WindowCreditRow.ecoin_id == row.ecoin_id,
                WindowCreditRow.epoch == row.epoch,
                WindowCreditRow.window_top == row.window_top,
            )
        ).first()
        if found is not None:
            return False
        self._s.add(row)
        self._s.flush()
        return True

    def credit_at(self, ecoin_id: str, epoch: int, window_top: int) -> StoredCredit | None:
        row = self._s.scalars(
            select(WindowCreditRow).where(
                WindowCreditRow.ecoin_id == ecoin_id,
                WindowCreditRow.epoch == epoch,
                WindowCreditRow.window_top == window_top,
            )
        ).first()
        return None if row is None else _credit(row)

    def net_credit(self, ecoin_id: str, epoch: int, window_top: int, claim_id: int) -> None:
        result = self._s.execute(
            update(WindowCreditRow)
            .where(
                WindowCreditRow.ecoin_id == ecoin_id,
                WindowCreditRow.epoch == epoch,
                WindowCreditRow.window_top == window_top,
                WindowCreditRow.claim_id.is_(None),
            )
            .values(claim_id=claim_id)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) != 1:
            raise Conflict("the window credit was netted meanwhile")

    def pending_refund_units(self, ecoin_id: str) -> int:
        """Units of the coin's kept window credits (netted or not): on their way back."""
        total = self._s.scalar(
            select(func.coalesce(func.sum(WindowCreditRow.refund_units), 0)).where(
                WindowCreditRow.ecoin_id == ecoin_id
            )
        )
        return int(total or 0)

    def refund(self, vendor_id: str, refund_id: str) -> VendorRefundRow | None:
        return self._s.scalars(
            select(VendorRefundRow).where(
                VendorRefundRow.vendor_id == vendor_id, VendorRefundRow.refund_id == refund_id
            )
        ).first()

    def refunded_for_receipt(self, vendor_id: str, ecoin_id: str, receipt_to_index: int) -> int:
        total = self._s.scalar(
            select(func.coalesce(func.sum(VendorRefundRow.amount_minor), 0)).where(
                VendorRefundRow.vendor_id == vendor_id,
                VendorRefundRow.ecoin_id == ecoin_id,
                VendorRefundRow.receipt_to_index == receipt_to_index,
            )
        )
        return int(total or 0)

    def refunds_of(self, ecoin_ids: Sequence[str]) -> list[VendorRefundRow]:
        if not ecoin_ids:
            return []
        return list(
            self._s.scalars(
                select(VendorRefundRow).where(VendorRefundRow.ecoin_id.in_(list(ecoin_ids)))
            )
        )

    def add_refund(self, row: VendorRefundRow) -> None:
        self._s.add(row)
        self._s.flush()

    def claimed_range(self, vendor_id: str, ecoin_id: str, to_index: int) -> StoredRange | None:
        """The claimed Receipt range of ``vendor_id`` ending at ``to_index``."""
        found = self.ranges(ecoin_ids=[ecoin_id], vendor_id=vendor_id, to_index=to_index)
        return found[0] if found else None

    def ranges(
        self,
        *,
        ecoin_ids: Sequence[str],
        vendor_id: str | None = None,
        to_index: int | None = None,
        before_ms: int | None = None,
        limit: int = 1000,
    ) -> list[StoredRange]:
        """Claimed Receipt ranges of the coins, newest first."""
        if not ecoin_ids:
            return []
        stmt = (
            select(ClaimRangeRow, ClaimRow.vendor_id, ClaimRow.epoch, ClaimRow.currency)
            .join(ClaimRow, ClaimRow.id == ClaimRangeRow.claim_id)
            .where(ClaimRangeRow.ecoin_id.in_(list(ecoin_ids)))
        )
        if vendor_id is not None:
            stmt = stmt.where(ClaimRow.vendor_id == vendor_id)
        if to_index is not None:
            stmt = stmt.where(ClaimRangeRow.to_index == to_index)
        if before_ms is not None:
            stmt = stmt.where(ClaimRangeRow.time_ms < before_ms)
        stmt = stmt.order_by(ClaimRangeRow.time_ms.desc(), ClaimRangeRow.id.desc()).limit(limit)
        return [
            StoredRange(
                claim_id=r.claim_id,
                vendor_id=vendor,
                ecoin_id=r.ecoin_id,
                epoch=int(epoch),
                from_index=r.from_index,
                to_index=r.to_index,
                item_id=r.item_id,
                time_ms=r.time_ms,
                amount_minor=r.amount_minor,
                currency=currency,
            )
            for r, vendor, epoch, currency in self._s.execute(stmt).all()
        ]

    def claims(
        self,
        *,
        vendor_id: str | None = None,
        ecoin_ids: Sequence[str] | None = None,
        before_ms: int | None = None,
        limit: int = 1000,
    ) -> list[StoredClaim]:
        stmt = select(ClaimRow, RedemptionBatchRow.batch_id).join(
            RedemptionBatchRow, RedemptionBatchRow.id == ClaimRow.batch_row_id
        )
        if vendor_id is not None:
            stmt = stmt.where(ClaimRow.vendor_id == vendor_id)
        if ecoin_ids is not None:
            stmt = stmt.where(ClaimRow.ecoin_id.in_(list(ecoin_ids)))
        if before_ms is not None:
            stmt = stmt.where(ClaimRow.created_at_ms < before_ms)
        stmt = stmt.order_by(ClaimRow.created_at_ms.desc(), ClaimRow.id.desc()).limit(limit)
        return [
            StoredClaim(
                claim_id=row.id,
                vendor_id=row.vendor_id,
                ecoin_id=row.ecoin_id,
                epoch=row.epoch,
                from_index=row.from_index,
                to_index=row.to_index,
                paid_units=row.paid_units,
                refund_units=row.refund_units,
                void_units=row.void_units,
                amount_minor=row.amount_minor,
                currency=row.currency,
                created_at_ms=row.created_at_ms,
                batch_id=batch_id,
            )
            for row, batch_id in self._s.execute(stmt).all()
        ]


def _credit(row: WindowCreditRow) -> StoredCredit:
    return StoredCredit(
        vendor_id=row.vendor_id,
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        window_top=row.window_top,
        consumed_index=row.consumed_index,
        refund_units=row.refund_units,
        received_at_ms=row.received_at_ms,
        claim_id=row.claim_id,
    )


class SpendingRepo:
    """Reader spending limits and the day's counter (a compare-and-set)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def limits(self, reader_id: str) -> list[SpendingLimits]:
        rows = self._s.scalars(
            select(SpendingLimitRow)
            .where(SpendingLimitRow.reader_id == reader_id)
            .order_by(SpendingLimitRow.currency)
        )
        return [SpendingLimits(r.currency, r.max_click_minor, r.max_day_minor) for r in rows]

    def limits_in(self, reader_id: str, currency: str) -> SpendingLimits | None:
        for found in self.limits(reader_id):
            if found.currency == currency:
                return found
        return None

    def set_limits(self, reader_id: str, limits: SpendingLimits, now_ms: int) -> None:
        row = self._s.scalars(
            select(SpendingLimitRow).where(
                SpendingLimitRow.reader_id == reader_id,
                SpendingLimitRow.currency == limits.currency,
            )
        ).first()
        if row is None:
            self._s.add(
                SpendingLimitRow(
                    reader_id=reader_id,
                    currency=limits.currency,
                    max_click_minor=limits.max_click_minor,
                    max_day_minor=limits.max_day_minor,
                    updated_at_ms=now_ms,
                )
            )
        else:
            row.max_click_minor = limits.max_click_minor
            row.max_day_minor = limits.max_day_minor
            row.updated_at_ms = now_ms
        self._s.flush()

    def spent(self, reader_id: str, day: int, currency: str) -> int:
        found = self._s.scalar(
            select(ReaderSpendingRow.spent_minor).where(
                ReaderSpendingRow.reader_id == reader_id,
                ReaderSpendingRow.day == day,
                ReaderSpendingRow.currency == currency,
            )
        )
        return int(found or 0)

    def charge(
        self, reader_id: str, day: int, currency: str, amount_minor: int, day_cap: int | None
    ) -> bool:
        """Add ``amount_minor`` to the day unless that passes ``day_cap`` (one
        ``UPDATE ... WHERE spent + amount <= cap``: concurrent draws never both pass)."""
        if (
            self._s.scalars(
                select(ReaderSpendingRow.id).where(
                    ReaderSpendingRow.reader_id == reader_id,
                    ReaderSpendingRow.day == day,
                    ReaderSpendingRow.currency == currency,
                )
            ).first()
            is None
        ):
            self._s.add(
                ReaderSpendingRow(reader_id=reader_id, day=day, currency=currency, spent_minor=0)
            )
            self._s.flush()
        stmt = update(ReaderSpendingRow).where(
            ReaderSpendingRow.reader_id == reader_id,
            ReaderSpendingRow.day == day,
            ReaderSpendingRow.currency == currency,
        )
        if day_cap is not None:
            stmt = stmt.where(ReaderSpendingRow.spent_minor + amount_minor <= day_cap)
        result = self._s.execute(
            stmt.values(spent_minor=ReaderSpendingRow.spent_minor + amount_minor).execution_options(
                synchronize_session=False
            )
        )
        return _rowcount(result) == 1


class Repos(Unit):
    """The repositories of one unit of work; ``commit()`` makes it durable."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.readers = ReaderRepo(session)
        self.vendors = VendorRepo(session)
        self.ledger = LedgerRepo(session)
        self.coins = CoinRepo(session)
        self.purchases = PurchaseRepo(session)
        self.portal = PortalRepo(session)
        self.wallets = WalletRepo(session)
        self.redemption = RedemptionRepo(session)
        self.spending = SpendingRepo(session)


class BrokerStore:
    """The broker's database: schema and units of work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._uow = UnitOfWork(engine, Repos)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    @contextmanager
    def begin(self, *, read_only: bool = False) -> Iterator[Repos]:
        """One unit of work. A duplicate key anywhere inside becomes AlreadyExists."""
        with self._uow(read_only=read_only) as repos:
            try:
                yield repos
            except IntegrityError as exc:
                raise AlreadyExists("a record with that key already exists") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def table_names() -> Sequence[str]:
    return sorted(Base.metadata.tables)
