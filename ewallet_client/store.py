"""The wallet's store: one SQLite file ``<wallet_dir>/wallet.sqlite``.

The directory is mode 0700, the database and its ``-wal``/``-shm`` files are
0600. It holds the broker settings (address, pinned broker id and key, reader
id, token — never the password), the coins with their seeds and pebbles
(every 64th word, so any word costs at most 63 hashes), the receipts, the
headers issued but not yet seen accepted, and the vendor certificates seen.

Every method is one transaction (``BEGIN IMMEDIATE`` on SQLite). The index
allocation in :meth:`WalletStore.allocate` is a compare-and-set on the coin
row inside that transaction, so two wallet processes never hand out
overlapping ranges; the same statements work on PostgreSQL. The reader's
spending limits (:mod:`netpay.spending`) are checked, and the day's spending
counted with a compare-and-set, in that same transaction: a refused payment
moves nothing. The auto-load agreements and their pending purchase live here
too (:meth:`WalletStore.claim_autoload`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ewallet_client.domain import (
    CoinEvent,
    CoinState,
    CoinView,
    WindowEvent,
    WindowState,
    choose_coin,
    transition,
    usable,
    window_transition,
)
from netpay.chain import hash_down
from netpay.encoding import b64url_encode
from netpay.errors import Conflict, InvalidArgument, LimitExceeded, NotFound, PermissionDenied
from netpay.files import ensure_private_dir
from netpay.limits import DEFAULT_LIMITS
from netpay.spending import MAX_LIMIT_MINOR, SpendingLimits, check_spend, utc_day
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "DB_NAME",
    "KEEP",
    "MAX_APPROVED_ORIGINS",
    "MAX_AUTOLOAD_BELOW_MINOR",
    "PEBBLE_EVERY",
    "Allocation",
    "ApprovedOrigin",
    "AutoloadAgreement",
    "AutoloadRow",
    "Base",
    "BridgeCharge",
    "BridgeOriginRow",
    "BridgeSpendingRow",
    "CertificateRow",
    "CoinRow",
    "Keep",
    "NewCoin",
    "OutstandingRow",
    "PebbleRow",
    "PendingCoin",
    "ReceiptRow",
    "Settings",
    "SettingsRow",
    "SpendingLimitRow",
    "SpendingRow",
    "WalletStore",
    "WindowRequest",
    "WindowRow",
    "WindowView",
    "effective_caps",
]

DB_NAME = "wallet.sqlite"
PEBBLE_EVERY = 64
_CAS_ATTEMPTS = 3
_MAX_URL_CHARS = 2048
_MAX_ORIGIN_CHARS = 300
MAX_APPROVED_ORIGINS = 1000
MAX_AUTOLOAD_BELOW_MINOR = MAX_LIMIT_MINOR
_MAX_ERROR_CHARS = 300


class Keep:
    """The type of :data:`KEEP`: "leave this limit as it is"."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


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
    url: Mapped[str] = mapped_column(String(_MAX_URL_CHARS))
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
    url: Mapped[str] = mapped_column(String(_MAX_URL_CHARS))
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

    origin: Mapped[str] = mapped_column(String(_MAX_ORIGIN_CHARS), primary_key=True)
    max_click_minor: Mapped[int | None] = mapped_column(BigInteger)
    max_day_minor: Mapped[int | None] = mapped_column(BigInteger)
    approved_at_ms: Mapped[int] = mapped_column(BigInteger)


class BridgeSpendingRow(Base):
    """What the bridge authorised for one origin on one UTC day, per currency."""

    __tablename__ = "bridge_spending"

    origin: Mapped[str] = mapped_column(String(_MAX_ORIGIN_CHARS), primary_key=True)
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
    origin: Mapped[str] = mapped_column(String(_MAX_ORIGIN_CHARS), index=True)
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
    url: Mapped[str] = mapped_column(String(_MAX_URL_CHARS))
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
    moves the coin's index (:func:`_spend`).
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
    last_error: Mapped[str | None] = mapped_column(String(_MAX_ERROR_CHARS))


@dataclass(frozen=True)
class WindowView:
    """What the wallet knows about one window (never the handle)."""

    window_id: int
    vendor_id: str
    origin: str
    ecoin_id: str
    state: WindowState
    window_from: int
    window_top: int
    unit_value_minor: int
    currency: str
    consumed_index: int
    epoch: int | None
    expires_at_ms: int | None
    url: str
    opened_at_ms: int
    closed_at_ms: int | None
    refund_units: int | None
    close_reason: str | None
    credit: bytes | None

    @property
    def units(self) -> int:
        return self.window_top - self.window_from

    @property
    def words_left(self) -> int:
        """Words the wallet may still spend from it (0 unless open)."""
        if self.state is not WindowState.OPEN:
            return 0
        return self.window_top - self.consumed_index

    def live(self, now_ms: int) -> bool:
        """Open and not past its expiry."""
        return (
            self.state is WindowState.OPEN
            and self.expires_at_ms is not None
            and self.expires_at_ms > now_ms
        )

    def to_json(self) -> dict[str, object]:
        return {
            "window_id": self.window_id,
            "vendor_id": self.vendor_id,
            "origin": self.origin,
            "ecoin_id": self.ecoin_id,
            "state": self.state.value,
            "epoch": self.epoch,
            "window_from": self.window_from,
            "window_top": self.window_top,
            "units": self.units,
            "consumed_index": self.consumed_index,
            "words_left": self.words_left,
            "unit_value": self.unit_value_minor,
            "currency": self.currency,
            "expires_at_ms": self.expires_at_ms,
            "opened_at_ms": self.opened_at_ms,
            "closed_at_ms": self.closed_at_ms,
            "refund_units": self.refund_units,
            "close_reason": self.close_reason,
            "window_credit": None if self.credit is None else b64url_encode(self.credit),
        }


def _window_view(row: WindowRow) -> WindowView:
    return WindowView(
        window_id=row.id,
        vendor_id=row.vendor_id,
        origin=row.origin,
        ecoin_id=row.ecoin_id,
        state=WindowState(row.state),
        window_from=row.window_from,
        window_top=row.window_top,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        consumed_index=row.consumed_index,
        epoch=row.epoch,
        expires_at_ms=row.expires_at_ms,
        url=row.url,
        opened_at_ms=row.opened_at_ms,
        closed_at_ms=row.closed_at_ms,
        refund_units=row.refund_units,
        close_reason=row.close_reason,
        credit=row.credit,
    )


_LIVE_WINDOW_STATES = (
    WindowState.OPENING.value,
    WindowState.OPEN.value,
    WindowState.UNUSABLE.value,
)


@dataclass(frozen=True)
class Settings:
    broker_addr: str | None
    broker_id: str | None
    broker_public_key: bytes | None
    reader_id: str | None
    username: str | None
    token: str | None
    token_expires_at_ms: int | None
    max_gap_units: int
    max_chain_units: int
    max_click_amount_minor: int
    max_skew_s: int


_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings))


@dataclass(frozen=True)
class PendingCoin:
    ecoin_id: str
    request_id: str
    n: int
    unit_value_minor: int
    currency: str
    root: bytes


@dataclass(frozen=True)
class NewCoin:
    """A client-side coin made but not yet stored: its chain's seed and pebbles."""

    ecoin_id: str
    request_id: str
    seed: bytes
    n: int
    unit_value_minor: int
    currency: str
    pebbles: Mapping[int, bytes]


@dataclass(frozen=True)
class AutoloadAgreement:
    """A standing agreement: buy ``units`` words when the balance falls below ``below_minor``."""

    currency: str
    enabled: bool
    below_minor: int
    units: int
    unit_value_minor: int
    created_at_ms: int
    last_request_id: str | None
    last_attempt_at_ms: int | None
    last_ecoin_id: str | None
    last_error: str | None
    # The latest auto-load coin is still pending (BuyCoin not confirmed yet).
    pending: bool

    @property
    def value_minor(self) -> int:
        return self.units * self.unit_value_minor

    def to_json(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "enabled": self.enabled,
            "below_minor": self.below_minor,
            "units": self.units,
            "unit_value": self.unit_value_minor,
            "value_minor": self.value_minor,
            "created_at_ms": self.created_at_ms,
            "last_attempt_at_ms": self.last_attempt_at_ms,
            "last_ecoin_id": self.last_ecoin_id,
            "last_error": self.last_error,
            "pending": self.pending,
        }


@dataclass(frozen=True)
class Allocation:
    """A range ``(prev, index]`` of one coin, given to exactly one header."""

    coin: CoinView  # the coin as it was before the allocation
    prev: int
    index: int
    # Words in this coin's headers issued earlier and not seen accepted.
    outstanding_words: int
    # The window row recorded with this allocation (``allocate(window=...)``).
    window_id: int | None = None

    @property
    def amount_minor(self) -> int:
        return (self.index - self.prev) * self.coin.unit_value_minor


@dataclass(frozen=True)
class ApprovedOrigin:
    """An origin the reader approved; ``None`` caps defer to the bridge's own."""

    origin: str
    max_click_minor: int | None
    max_day_minor: int | None
    approved_at_ms: int

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "max_click_minor": self.max_click_minor,
            "max_day_minor": self.max_day_minor,
            "approved_at_ms": self.approved_at_ms,
        }


@dataclass(frozen=True)
class WindowRequest:
    """Allocate ``units`` words for a window rather than one click's price.

    With ``origin`` (the CLI), the window is recorded (state ``opening``) in
    the allocation's transaction; without it (the browser bridge, whose page
    gets the cookie) only the header is.
    """

    units: int
    origin: str | None = None


@dataclass(frozen=True)
class BridgeCharge:
    """Charge an allocation to an approved origin's budget, in the same transaction.

    ``max_click_minor`` and ``max_day_minor`` are the bridge's own caps; the
    origin's caps, when set and lower, win (:func:`effective_caps`).
    """

    origin: str
    day: int  # days since 1970-01-01 UTC
    max_click_minor: int
    max_day_minor: int


def effective_caps(
    origin: ApprovedOrigin, *, max_click_minor: int, max_day_minor: int
) -> tuple[int, int]:
    """(per click, per day): the lower of the bridge's caps and the origin's own."""
    click = max_click_minor
    if origin.max_click_minor is not None:
        click = min(click, origin.max_click_minor)
    day = max_day_minor
    if origin.max_day_minor is not None:
        day = min(day, origin.max_day_minor)
    return click, day


def _approved(row: BridgeOriginRow) -> ApprovedOrigin:
    return ApprovedOrigin(row.origin, row.max_click_minor, row.max_day_minor, row.approved_at_ms)


def _view(row: CoinRow) -> CoinView:
    return CoinView(
        ecoin_id=row.ecoin_id,
        state=CoinState(row.state),
        n=row.n,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        index=row.index,
        accepted_index=row.accepted_index,
        expires_at_ms=row.expires_at_ms,
        last_vendor=row.last_vendor,
        created_at_ms=row.created_at_ms,
    )


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


class WalletStore:
    """The wallet's persistent state; each method is one transaction."""

    def __init__(self, wallet_dir: Path) -> None:
        ensure_private_dir(wallet_dir)
        self.path = wallet_dir / DB_NAME
        self._engine = make_engine(sqlite_url(self.path), private=True)
        self._uow = UnitOfWork(self._engine)
        try:
            self._uow.create_all(Base)
        except OperationalError:  # another process created the tables meanwhile
            self._uow.create_all(Base)
        with self._uow() as s:
            if s.get(SettingsRow, 1) is None:
                s.add(SettingsRow(id=1))
                try:
                    s.commit()
                except IntegrityError:  # pragma: no cover - a concurrent first start
                    s.rollback()
        self._make_files_private()

    def _make_files_private(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            p = self.path.with_name(self.path.name + suffix)
            if p.exists() and p.stat().st_mode & 0o077:
                p.chmod(0o600)

    def close(self) -> None:
        self._engine.dispose()

    # -- settings -------------------------------------------------------------

    def settings(self) -> Settings:
        with self._uow() as s:
            row = s.get_one(SettingsRow, 1)
            return Settings(**{name: getattr(row, name) for name in _SETTINGS_FIELDS})

    def save_settings(self, **changes: object) -> Settings:
        unknown = set(changes) - _SETTINGS_FIELDS
        assert not unknown, unknown
        with self._uow() as s:
            s.execute(update(SettingsRow).where(SettingsRow.id == 1).values(**changes))
            s.commit()
        return self.settings()

    # -- coins ----------------------------------------------------------------

    def add_pending_coin(
        self,
        *,
        ecoin_id: str,
        request_id: str,
        seed: bytes,
        n: int,
        unit_value_minor: int,
        currency: str,
        pebbles: Mapping[int, bytes],
        now_ms: int,
    ) -> PendingCoin:
        """Store a coin (seed, root, pebbles) before its BuyCoin is sent."""
        coin = NewCoin(ecoin_id, request_id, seed, n, unit_value_minor, currency, pebbles)
        with self._uow() as s:
            pending = _insert_coin(s, coin, now_ms)
            s.commit()
        self._make_files_private()
        return pending

    def pending_coins(self) -> list[PendingCoin]:
        with self._uow() as s:
            rows = s.scalars(
                select(CoinRow)
                .where(CoinRow.state == CoinState.PENDING.value)
                .order_by(CoinRow.created_at_ms, CoinRow.ecoin_id)
            ).all()
            return [
                PendingCoin(r.ecoin_id, r.request_id, r.n, r.unit_value_minor, r.currency, r.root)
                for r in rows
            ]

    def change_state(
        self,
        ecoin_id: str,
        event: CoinEvent,
        *,
        touchstone: bytes | None = None,
        expires_at_ms: int | None = None,
    ) -> CoinView:
        """Apply ``event`` to a coin (compare-and-set on its current state)."""
        with self._uow() as s:
            row = s.get(CoinRow, ecoin_id)
            if row is None:
                raise NotFound(f"no coin {ecoin_id} in the wallet")
            current = CoinState(row.state)
            new = transition(current, event)
            values: dict[str, object] = {"state": new.value}
            if event is CoinEvent.SOLD:
                assert touchstone is not None and expires_at_ms is not None
                values.update(touchstone=touchstone, expires_at_ms=expires_at_ms)
            result = s.execute(
                update(CoinRow)
                .where(CoinRow.ecoin_id == ecoin_id, CoinRow.state == current.value)
                .values(**values)
            )
            if _rowcount(result) != 1:
                raise Conflict(f"coin {ecoin_id} changed state meanwhile")
            if new is CoinState.ABANDONED:  # nothing was sold: the chain is worthless
                s.execute(delete(PebbleRow).where(PebbleRow.ecoin_id == ecoin_id))
            s.commit()
            s.refresh(row)
            return _view(row)

    def coin(self, ecoin_id: str) -> CoinView:
        with self._uow() as s:
            row = s.get(CoinRow, ecoin_id)
            if row is None:
                raise NotFound(f"no coin {ecoin_id} in the wallet")
            return _view(row)

    def coins(self) -> list[CoinView]:
        with self._uow() as s:
            rows = s.scalars(select(CoinRow).order_by(CoinRow.created_at_ms, CoinRow.ecoin_id))
            return [_view(r) for r in rows]

    def word(self, ecoin_id: str, j: int) -> bytes:
        """``w[j]`` of a coin: at most ``PEBBLE_EVERY - 1`` hashes from a pebble."""
        with self._uow() as s:
            row = s.get(CoinRow, ecoin_id)
            if row is None:
                raise NotFound(f"no coin {ecoin_id} in the wallet")
            if not 0 <= j <= row.n:
                raise IndexError(j)
            upper = (
                j if j % PEBBLE_EVERY == 0 else min(row.n, (j // PEBBLE_EVERY + 1) * PEBBLE_EVERY)
            )
            pebble = s.get(PebbleRow, (ecoin_id, upper))
            if pebble is None:
                raise NotFound(f"coin {ecoin_id} has no pebble at {upper}")
            assert upper - j < PEBBLE_EVERY
            return hash_down(bytes.fromhex(ecoin_id), upper, pebble.word, j)

    # -- paying ---------------------------------------------------------------

    def allocate(
        self,
        *,
        amount_minor: int,
        currency: str,
        realm: str,
        url: str,
        now_ms: int,
        skew_ms: int,
        charge: BridgeCharge | None = None,
        window: WindowRequest | None = None,
        spend: bool = True,
    ) -> Allocation:
        """Pick a coin and move its index past a fresh range, in one transaction.

        ``p = coin.index``, ``j = p + amount / u``, ``coin.index = j``: the
        range ``(p, j]`` belongs to this header alone, whatever else runs.
        With ``window``, ``j = p + units`` instead (``amount_minor`` is then
        the price a window click will pay: the coin's unit value must divide
        it), and the window is recorded in the same transaction.
        With ``charge``, the amount (a window's: units * unit value) is also
        added to the origin's spending of the day in the same transaction,
        and a cap it would pass (or an origin no longer approved) refuses the
        whole allocation: nothing moves.
        With ``spend`` (every payment but a header re-issued for the same
        click after a resync), the amount is checked against the reader's
        spending limits (:func:`netpay.spending.check_spend`; a window is one
        payment with ``per_click=False``) and added to the UTC day's spending
        in the same transaction: a refusal (``limit_exceeded``) moves nothing.
        """
        for _ in range(_CAS_ATTEMPTS):
            with self._uow() as s:
                if charge is not None and window is None:
                    _charge(s, charge, amount_minor=amount_minor, currency=currency)
                rows = s.scalars(
                    select(CoinRow).where(
                        CoinRow.state == CoinState.ACTIVE.value, CoinRow.currency == currency
                    )
                ).all()
                windowed = s.scalars(
                    select(WindowRow.ecoin_id).where(
                        WindowRow.state.in_(_LIVE_WINDOW_STATES), WindowRow.vendor_id != realm
                    )
                ).all()
                coin, words = choose_coin(
                    [_view(r) for r in rows],
                    amount_minor=amount_minor,
                    currency=currency,
                    realm=realm,
                    now_ms=now_ms,
                    skew_ms=skew_ms,
                    words=None if window is None else window.units,
                    windowed_elsewhere=frozenset(windowed),
                )
                if charge is not None and window is not None:
                    _charge(
                        s,
                        charge,
                        amount_minor=words * coin.unit_value_minor,
                        currency=currency,
                        per_click=False,
                    )
                if spend:
                    _spend(
                        s,
                        currency=currency,
                        day=utc_day(now_ms),
                        amount_minor=words * coin.unit_value_minor,
                        per_click=window is None,
                    )
                prev = coin.index
                index = prev + words
                assert 0 < index <= coin.n
                result = s.execute(
                    update(CoinRow)
                    .where(CoinRow.ecoin_id == coin.ecoin_id, CoinRow.index == prev)
                    .values(index=index)
                )
                if _rowcount(result) != 1:
                    continue  # another writer moved the coin (PostgreSQL); choose again
                outstanding = s.scalar(
                    select(
                        func.coalesce(func.sum(OutstandingRow.index - OutstandingRow.prev), 0)
                    ).where(OutstandingRow.ecoin_id == coin.ecoin_id)
                )
                s.add(
                    OutstandingRow(
                        ecoin_id=coin.ecoin_id,
                        prev=prev,
                        index=index,
                        vendor_id=realm,
                        url=url[:_MAX_URL_CHARS],
                        issued_at_ms=now_ms,
                    )
                )
                window_id = None
                if window is not None and window.origin is not None:
                    row = WindowRow(
                        vendor_id=realm,
                        origin=window.origin[:_MAX_ORIGIN_CHARS],
                        ecoin_id=coin.ecoin_id,
                        state=WindowState.OPENING.value,
                        window_from=prev,
                        window_top=index,
                        unit_value_minor=coin.unit_value_minor,
                        currency=coin.currency,
                        consumed_index=prev,
                        url=url[:_MAX_URL_CHARS],
                        opened_at_ms=now_ms,
                    )
                    s.add(row)
                    s.flush()
                    window_id = row.id
                s.commit()
                return Allocation(coin, prev, index, int(outstanding or 0), window_id)
        raise Conflict("could not allocate an index range: the coins kept changing")

    def resync(self, ecoin_id: str, index: int) -> bool:
        """Move a coin's index up to ``index`` (never down); True if it moved.

        The caller has checked that the vendor's payword is this coin's
        ``w[index]``. Headers at or below ``index`` are settled either way.
        """
        with self._uow() as s:
            row = s.get(CoinRow, ecoin_id)
            if row is None:
                raise NotFound(f"no coin {ecoin_id} in the wallet")
            assert 0 <= index <= row.n
            moved = _rowcount(
                s.execute(
                    update(CoinRow)
                    .where(CoinRow.ecoin_id == ecoin_id, CoinRow.index < index)
                    .values(index=index)
                )
            )
            s.execute(
                delete(OutstandingRow).where(
                    OutstandingRow.ecoin_id == ecoin_id, OutstandingRow.index <= index
                )
            )
            s.commit()
            return moved == 1

    def record_receipt(
        self,
        receipt: pb.Receipt,
        *,
        envelope: bytes,
        url: str,
        now_ms: int,
        window_id: int | None = None,
    ) -> None:
        """A verified receipt: keep it, move ``accepted_index``, settle the headers.

        With ``window_id`` (a click paid from that window), the window's
        consumed index moves up to the receipt's ``to`` in the same transaction.
        """
        with self._uow() as s:
            if window_id is not None:
                s.execute(
                    update(WindowRow)
                    .where(
                        WindowRow.id == window_id,
                        WindowRow.consumed_index < receipt.to_index,
                    )
                    .values(consumed_index=receipt.to_index)
                )
            row = s.get(CoinRow, receipt.ecoin_id)
            if row is None:
                raise NotFound(f"no coin {receipt.ecoin_id} in the wallet")
            assert receipt.to_index <= row.index, "a receipt above the wallet's own index"
            seen = s.scalar(
                select(ReceiptRow.id).where(
                    ReceiptRow.vendor_id == receipt.vendor_id,
                    ReceiptRow.ecoin_id == receipt.ecoin_id,
                    ReceiptRow.to_index == receipt.to_index,
                )
            )
            if seen is None:
                s.add(
                    ReceiptRow(
                        vendor_id=receipt.vendor_id,
                        ecoin_id=receipt.ecoin_id,
                        epoch=receipt.epoch,
                        from_index=receipt.from_index,
                        to_index=receipt.to_index,
                        amount_minor=receipt.amount_minor,
                        currency=receipt.currency,
                        item_id=receipt.item_id,
                        time_ms=receipt.time_ms,
                        url=url[:_MAX_URL_CHARS],
                        envelope=envelope,
                        stored_at_ms=now_ms,
                    )
                )
            s.execute(
                update(CoinRow)
                .where(
                    CoinRow.ecoin_id == receipt.ecoin_id,
                    CoinRow.accepted_index < receipt.to_index,
                )
                .values(accepted_index=receipt.to_index)
            )
            s.execute(
                update(CoinRow)
                .where(CoinRow.ecoin_id == receipt.ecoin_id)
                .values(last_vendor=receipt.vendor_id)
            )
            s.execute(
                delete(OutstandingRow).where(
                    OutstandingRow.ecoin_id == receipt.ecoin_id,
                    OutstandingRow.index <= receipt.to_index,
                )
            )
            s.commit()

    def outstanding_words(self, ecoin_id: str) -> int:
        with self._uow() as s:
            total = s.scalar(
                select(
                    func.coalesce(func.sum(OutstandingRow.index - OutstandingRow.prev), 0)
                ).where(OutstandingRow.ecoin_id == ecoin_id)
            )
            return int(total or 0)

    def receipts(self) -> list[dict[str, object]]:
        with self._uow() as s:
            rows = s.scalars(select(ReceiptRow).order_by(ReceiptRow.id)).all()
            return [_receipt_json(r) for r in rows]

    # -- windows --------------------------------------------------------------

    def window_opened(
        self,
        window_id: int,
        *,
        epoch: int,
        expires_at_ms: int,
        handle: str,
        consumed_index: int,
    ) -> WindowView:
        """The vendor opened the window: keep its handle; the range is settled.

        The coin's ``accepted_index`` moves to the window top and the headers
        at or below it are settled, as a receipt would do.
        """
        assert len(handle) <= 64
        with self._uow() as s:
            row = s.get(WindowRow, window_id)
            if row is None:
                raise NotFound(f"no window {window_id} in the wallet")
            current = WindowState(row.state)
            new = window_transition(current, WindowEvent.ACCEPTED)
            assert row.window_from <= consumed_index <= row.window_top
            moved = _rowcount(
                s.execute(
                    update(WindowRow)
                    .where(WindowRow.id == window_id, WindowRow.state == current.value)
                    .values(
                        state=new.value,
                        epoch=epoch,
                        expires_at_ms=expires_at_ms,
                        handle=handle,
                        consumed_index=consumed_index,
                    )
                )
            )
            if moved != 1:
                raise Conflict(f"window {window_id} changed state meanwhile")
            s.execute(
                update(CoinRow)
                .where(CoinRow.ecoin_id == row.ecoin_id, CoinRow.accepted_index < row.window_top)
                .values(accepted_index=row.window_top)
            )
            s.execute(
                update(CoinRow)
                .where(CoinRow.ecoin_id == row.ecoin_id)
                .values(last_vendor=row.vendor_id)
            )
            s.execute(
                delete(OutstandingRow).where(
                    OutstandingRow.ecoin_id == row.ecoin_id,
                    OutstandingRow.index <= row.window_top,
                )
            )
            s.commit()
            s.refresh(row)
            return _window_view(row)

    def change_window(
        self,
        window_id: int,
        event: WindowEvent,
        *,
        now_ms: int,
        credit: pb.WindowCredit | None = None,
        credit_envelope: bytes | None = None,
    ) -> WindowView:
        """Apply ``event`` to a window (compare-and-set on its state).

        Closing events (credited, vanished, refused) erase the handle; a
        credit stores the vendor's signed WindowCredit and its consumed index.
        """
        with self._uow() as s:
            row = s.get(WindowRow, window_id)
            if row is None:
                raise NotFound(f"no window {window_id} in the wallet")
            current = WindowState(row.state)
            new = window_transition(current, event)
            values: dict[str, object] = {"state": new.value}
            if new in (WindowState.CLOSED, WindowState.GONE, WindowState.FAILED):
                values.update(handle=None, closed_at_ms=now_ms)
            if event is WindowEvent.CREDITED:
                assert credit is not None and credit_envelope is not None
                values.update(
                    credit=credit_envelope,
                    refund_units=credit.refund_units,
                    close_reason=credit.reason,
                    consumed_index=max(row.consumed_index, credit.consumed_index),
                )
            moved = _rowcount(
                s.execute(
                    update(WindowRow)
                    .where(WindowRow.id == window_id, WindowRow.state == current.value)
                    .values(**values)
                )
            )
            if moved != 1:
                raise Conflict(f"window {window_id} changed state meanwhile")
            s.commit()
            s.refresh(row)
            return _window_view(row)

    def window(self, window_id: int) -> WindowView:
        with self._uow(read_only=True) as s:
            row = s.get(WindowRow, window_id)
            if row is None:
                raise NotFound(f"no window {window_id} in the wallet")
            return _window_view(row)

    def windows(self, *, states: tuple[WindowState, ...] | None = None) -> list[WindowView]:
        """The windows, oldest first (``states`` filters)."""
        with self._uow(read_only=True) as s:
            query = select(WindowRow).order_by(WindowRow.id)
            if states is not None:
                query = query.where(WindowRow.state.in_([st.value for st in states]))
            return [_window_view(r) for r in s.scalars(query).all()]

    def window_handle(self, window_id: int) -> str | None:
        """The window's cookie value (a bearer secret; None once closed)."""
        with self._uow(read_only=True) as s:
            row = s.get(WindowRow, window_id)
            if row is None:
                raise NotFound(f"no window {window_id} in the wallet")
            return row.handle

    def windows_at(self, origin: str, *, states: tuple[WindowState, ...]) -> list[WindowView]:
        """The windows at a vendor web origin in ``states``, newest first."""
        if len(origin) > _MAX_ORIGIN_CHARS:
            return []
        with self._uow(read_only=True) as s:
            rows = s.scalars(
                select(WindowRow)
                .where(
                    WindowRow.origin == origin,
                    WindowRow.state.in_([st.value for st in states]),
                )
                .order_by(WindowRow.id.desc())
            ).all()
            return [_window_view(r) for r in rows]

    # -- vendor certificates --------------------------------------------------

    def certificate(self, vendor_id: str, *, fetched_after_ms: int) -> bytes | None:
        """The stored certificate envelope of a vendor, if fetched after the given time."""
        with self._uow() as s:
            row = s.get(CertificateRow, vendor_id)
            if row is None or row.fetched_at_ms <= fetched_after_ms:
                return None
            return row.envelope

    def save_certificate(
        self, vendor_id: str, envelope: bytes, *, valid_until_ms: int, now_ms: int
    ) -> None:
        with self._uow() as s:
            row = s.get(CertificateRow, vendor_id)
            if row is None:
                row = CertificateRow(vendor_id=vendor_id)
                s.add(row)
            row.envelope = envelope
            row.valid_until_ms = valid_until_ms
            row.fetched_at_ms = now_ms
            s.commit()

    # -- browser bridge -------------------------------------------------------

    def approve_origin(
        self,
        origin: str,
        *,
        max_click_minor: int | None,
        max_day_minor: int | None,
        now_ms: int,
    ) -> ApprovedOrigin:
        """Approve (or re-approve with new caps) a normalised web origin."""
        assert len(origin) <= _MAX_ORIGIN_CHARS
        with self._uow() as s:
            row = s.get(BridgeOriginRow, origin)
            if row is None:
                count = s.scalar(select(func.count()).select_from(BridgeOriginRow)) or 0
                if count >= MAX_APPROVED_ORIGINS:
                    raise InvalidArgument(
                        f"at most {MAX_APPROVED_ORIGINS} approved origins: revoke some first"
                    )
                row = BridgeOriginRow(origin=origin)
                s.add(row)
            row.max_click_minor = max_click_minor
            row.max_day_minor = max_day_minor
            row.approved_at_ms = now_ms
            s.commit()
            return _approved(row)

    def revoke_origin(self, origin: str) -> bool:
        """Forget an approved origin (its spending history stays); True if it was there."""
        with self._uow() as s:
            gone = _rowcount(
                s.execute(delete(BridgeOriginRow).where(BridgeOriginRow.origin == origin))
            )
            s.commit()
            return gone == 1

    def approved_origin(self, origin: str) -> ApprovedOrigin | None:
        if len(origin) > _MAX_ORIGIN_CHARS:
            return None
        with self._uow(read_only=True) as s:
            row = s.get(BridgeOriginRow, origin)
            return None if row is None else _approved(row)

    def approved_origins(self) -> list[ApprovedOrigin]:
        with self._uow(read_only=True) as s:
            rows = s.scalars(select(BridgeOriginRow).order_by(BridgeOriginRow.origin)).all()
            return [_approved(r) for r in rows]

    def bridge_spending(self, origin: str, day: int) -> dict[str, tuple[int, int]]:
        """{currency: (spent minor units, clicks)} for ``origin`` on ``day`` (bridge)."""
        with self._uow(read_only=True) as s:
            rows = s.scalars(
                select(BridgeSpendingRow).where(
                    BridgeSpendingRow.origin == origin, BridgeSpendingRow.day == day
                )
            ).all()
            return {r.currency: (r.spent_minor, r.clicks) for r in rows}

    # -- spending limits ------------------------------------------------------

    def spending_limits(self, currency: str) -> SpendingLimits | None:
        """The reader's limits in ``currency`` (None: no limit set)."""
        with self._uow(read_only=True) as s:
            row = s.get(SpendingLimitRow, currency)
            return None if row is None else _limits(row)

    def all_spending_limits(self) -> list[SpendingLimits]:
        """Every currency with a limit, by currency."""
        with self._uow(read_only=True) as s:
            rows = s.scalars(select(SpendingLimitRow).order_by(SpendingLimitRow.currency)).all()
            return [_limits(r) for r in rows]

    def set_spending_limits(
        self,
        currency: str,
        *,
        now_ms: int,
        max_click_minor: int | Keep | None = KEEP,
        max_day_minor: int | Keep | None = KEEP,
    ) -> SpendingLimits:
        """Change the limits in ``currency``; a limit not passed (``KEEP``) stays.

        ``None`` removes a limit. The values are checked by
        :class:`netpay.spending.SpendingLimits` (``invalid_argument``).
        """
        with self._uow() as s:
            row = s.get(SpendingLimitRow, currency)
            old = SpendingLimits(currency) if row is None else _limits(row)
            new = SpendingLimits(
                currency,
                max_click_minor=old.max_click_minor
                if isinstance(max_click_minor, Keep)
                else max_click_minor,
                max_day_minor=old.max_day_minor
                if isinstance(max_day_minor, Keep)
                else max_day_minor,
            )
            if new.unlimited:
                if row is not None:
                    s.delete(row)
            else:
                if row is None:
                    row = SpendingLimitRow(currency=currency)
                    s.add(row)
                row.max_click_minor = new.max_click_minor
                row.max_day_minor = new.max_day_minor
                row.updated_at_ms = now_ms
            s.commit()
            return new

    def spending(self, day: int) -> dict[str, tuple[int, int]]:
        """{currency: (spent minor units, payments)} of the wallet's own payments on ``day``."""
        with self._uow(read_only=True) as s:
            rows = s.scalars(select(SpendingRow).where(SpendingRow.day == day)).all()
            return {r.currency: (r.spent_minor, r.payments) for r in rows}

    # -- auto-load ------------------------------------------------------------

    def usable_value_minor(self, currency: str, *, now_ms: int, skew_ms: int) -> int:
        """The value left on the active, unexpired client-side coins in ``currency``."""
        with self._uow(read_only=True) as s:
            return _usable_value(s, currency, now_ms=now_ms, skew_ms=skew_ms)

    def set_autoload(
        self,
        currency: str,
        *,
        below_minor: int,
        units: int,
        unit_value_minor: int,
        now_ms: int,
    ) -> AutoloadAgreement:
        """Make (or change) the agreement in ``currency``; the caller checked the terms."""
        assert 1 <= below_minor <= MAX_AUTOLOAD_BELOW_MINOR and units >= 1
        assert unit_value_minor >= 1
        with self._uow() as s:
            row = s.get(AutoloadRow, currency)
            if row is None:
                row = AutoloadRow(currency=currency, last_request_id=None)
                s.add(row)
            row.enabled = True
            row.below_minor = below_minor
            row.units = units
            row.unit_value_minor = unit_value_minor
            row.created_at_ms = now_ms
            row.last_error = None
            s.flush()
            agreement = _agreement(s, row)
            s.commit()
            return agreement

    def autoload_off(self, currency: str) -> AutoloadAgreement | None:
        """End the agreement (a purchase still pending is completed all the same)."""
        with self._uow() as s:
            row = s.get(AutoloadRow, currency)
            if row is None:
                return None
            row.enabled = False
            s.flush()
            agreement = _agreement(s, row)
            s.commit()
            return agreement

    def autoload(self, currency: str) -> AutoloadAgreement | None:
        """The agreement in ``currency`` (enabled or not), if any."""
        with self._uow(read_only=True) as s:
            row = s.get(AutoloadRow, currency)
            return None if row is None else _agreement(s, row)

    def autoloads(self, *, enabled_only: bool = True) -> list[AutoloadAgreement]:
        with self._uow(read_only=True) as s:
            query = select(AutoloadRow).order_by(AutoloadRow.currency)
            if enabled_only:
                query = query.where(AutoloadRow.enabled.is_(True))
            return [_agreement(s, r) for r in s.scalars(query).all()]

    def autoload_pending(self, currency: str) -> PendingCoin | None:
        """The agreement's latest coin while its purchase is not confirmed."""
        with self._uow(read_only=True) as s:
            row = s.get(AutoloadRow, currency)
            return None if row is None else _pending_by_request(s, row.last_request_id)

    def claim_autoload(
        self, coin: NewCoin, *, now_ms: int, skew_ms: int
    ) -> tuple[PendingCoin, bool] | None:
        """Store ``coin`` as the agreement's next purchase, if one is due; one transaction.

        Returns ``(pending coin, is_new)``: the agreement's coin still pending
        if there is one (``coin`` is then not stored: the same request id is
        retried), else ``coin`` when the agreement is enabled, has these
        terms and the usable value in its currency is below the threshold;
        None when nothing is due. The agreement's ``last_request_id`` moves
        with a compare-and-set, so two processes never both start a purchase.
        """
        with self._uow() as s:
            row = s.get(AutoloadRow, coin.currency)
            if row is None:
                return None
            pending = _pending_by_request(s, row.last_request_id)
            if pending is not None:
                return pending, False
            if (
                not row.enabled
                or (row.units, row.unit_value_minor) != (coin.n, coin.unit_value_minor)
                or _usable_value(s, coin.currency, now_ms=now_ms, skew_ms=skew_ms)
                >= row.below_minor
            ):
                return None
            previous = row.last_request_id
            same = (
                AutoloadRow.last_request_id.is_(None)
                if previous is None
                else AutoloadRow.last_request_id == previous
            )
            moved = _rowcount(
                s.execute(
                    update(AutoloadRow)
                    .where(AutoloadRow.currency == coin.currency, same)
                    .values(
                        last_request_id=coin.request_id,
                        last_attempt_at_ms=now_ms,
                        last_ecoin_id=coin.ecoin_id,
                    )
                    .execution_options(synchronize_session=False)
                )
            )
            if moved != 1:  # another process started a purchase meanwhile (PostgreSQL)
                return None
            stored = _insert_coin(s, coin, now_ms)
            s.commit()
        self._make_files_private()
        return stored, True

    def autoload_attempted(
        self, currency: str, *, now_ms: int, ecoin_id: str | None, error: str | None
    ) -> None:
        """Record how the agreement's latest purchase went (``error`` None: bought).

        ``ecoin_id`` None: the attempt failed before a coin was chosen.
        """
        values: dict[str, object] = {
            "last_attempt_at_ms": now_ms,
            "last_error": None if error is None else error[:_MAX_ERROR_CHARS],
        }
        if ecoin_id is not None:
            values["last_ecoin_id"] = ecoin_id
        with self._uow() as s:
            s.execute(update(AutoloadRow).where(AutoloadRow.currency == currency).values(**values))
            s.commit()


def _limits(row: SpendingLimitRow) -> SpendingLimits:
    return SpendingLimits(row.currency, row.max_click_minor, row.max_day_minor)


def _insert_coin(s: Any, coin: NewCoin, now_ms: int) -> PendingCoin:
    """Insert a pending coin and its pebbles (``w[0]`` is the root, ``w[n]`` the seed)."""
    root = coin.pebbles[0]
    assert coin.pebbles[coin.n] == coin.seed
    s.add(
        CoinRow(
            ecoin_id=coin.ecoin_id,
            state=CoinState.PENDING.value,
            request_id=coin.request_id,
            seed=coin.seed,
            root=root,
            n=coin.n,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            created_at_ms=now_ms,
            index=0,
            accepted_index=0,
        )
    )
    s.flush()
    s.execute(
        insert(PebbleRow),
        [{"ecoin_id": coin.ecoin_id, "position": i, "word": w} for i, w in coin.pebbles.items()],
    )
    return PendingCoin(
        coin.ecoin_id, coin.request_id, coin.n, coin.unit_value_minor, coin.currency, root
    )


def _pending_by_request(s: Any, request_id: str | None) -> PendingCoin | None:
    if request_id is None:
        return None
    r = s.scalar(
        select(CoinRow).where(
            CoinRow.request_id == request_id, CoinRow.state == CoinState.PENDING.value
        )
    )
    if r is None:
        return None
    return PendingCoin(r.ecoin_id, r.request_id, r.n, r.unit_value_minor, r.currency, r.root)


def _usable_value(s: Any, currency: str, *, now_ms: int, skew_ms: int) -> int:
    rows = s.scalars(
        select(CoinRow).where(CoinRow.state == CoinState.ACTIVE.value, CoinRow.currency == currency)
    ).all()
    return sum(c.value_left_minor for c in map(_view, rows) if usable(c, now_ms, skew_ms))


def _agreement(s: Any, row: AutoloadRow) -> AutoloadAgreement:
    return AutoloadAgreement(
        currency=row.currency,
        enabled=row.enabled,
        below_minor=row.below_minor,
        units=row.units,
        unit_value_minor=row.unit_value_minor,
        created_at_ms=row.created_at_ms,
        last_request_id=row.last_request_id,
        last_attempt_at_ms=row.last_attempt_at_ms,
        last_ecoin_id=row.last_ecoin_id,
        last_error=row.last_error,
        pending=_pending_by_request(s, row.last_request_id) is not None,
    )


def _spend(s: Any, *, currency: str, day: int, amount_minor: int, per_click: bool) -> None:
    """Check ``amount_minor`` against the reader's limits and count it on ``day``.

    The rules are :func:`netpay.spending.check_spend`'s. The day's row is
    raised with a compare-and-set (``UPDATE ... WHERE spent + amount <= cap``)
    in the caller's transaction, so two concurrent payments can never both
    pass under the daily limit (SQLite: one writer; PostgreSQL: the row lock
    re-checks WHERE), and a refusal leaves the transaction to roll back.
    """
    row = s.get(SpendingLimitRow, currency)
    limits = None if row is None else _limits(row)
    if s.get(SpendingRow, (day, currency)) is None:
        try:
            with s.begin_nested():
                s.add(SpendingRow(day=day, currency=currency, spent_minor=0, payments=0))
        except IntegrityError:  # a concurrent first payment of the day (PostgreSQL)
            pass
    where = [SpendingRow.day == day, SpendingRow.currency == currency]

    def spent_now() -> int:
        return int(s.scalar(select(SpendingRow.spent_minor).where(*where)) or 0)

    check_spend(limits, amount_minor, spent_now(), per_click=per_click)
    if limits is not None and limits.max_day_minor is not None:
        where.append(SpendingRow.spent_minor + amount_minor <= limits.max_day_minor)
    moved = _rowcount(
        s.execute(
            update(SpendingRow)
            .where(*where)
            .values(
                spent_minor=SpendingRow.spent_minor + amount_minor,
                payments=SpendingRow.payments + 1,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if moved != 1:  # another payment passed first: the fresh total decides
        where = where[:2]
        check_spend(limits, amount_minor, spent_now(), per_click=per_click)
        raise LimitExceeded(f"the daily limit in {currency} was reached meanwhile")


def _charge(
    s: Any, charge: BridgeCharge, *, amount_minor: int, currency: str, per_click: bool = True
) -> None:
    """Add ``amount_minor`` to the origin's spending of the day, within its caps.

    ``per_click=False`` (a window: its clicks' prices are checked one by one
    by the page's own requests) skips the per-click cap; the daily cap applies.

    A compare-and-set (``UPDATE ... WHERE spent + amount <= cap``) on the
    day's row: two concurrent transactions can never both pass under the cap,
    on SQLite (one writer) as on PostgreSQL (the row lock re-checks WHERE).
    """
    row = s.get(BridgeOriginRow, charge.origin)
    if row is None:
        raise PermissionDenied(f"{charge.origin} is not an origin this wallet approved")
    click_cap, day_cap = effective_caps(
        _approved(row),
        max_click_minor=charge.max_click_minor,
        max_day_minor=charge.max_day_minor,
    )
    if per_click and amount_minor > click_cap:
        raise LimitExceeded(
            f"price {amount_minor} {currency} minor units is above the per-click cap "
            f"of {click_cap} for {charge.origin}"
        )
    key = (charge.origin, charge.day, currency)
    if s.get(BridgeSpendingRow, key) is None:
        try:
            with s.begin_nested():
                s.add(
                    BridgeSpendingRow(
                        origin=charge.origin,
                        day=charge.day,
                        currency=currency,
                        spent_minor=0,
                        clicks=0,
                    )
                )
        except IntegrityError:  # a concurrent first click of the day (PostgreSQL)
            pass
    moved = _rowcount(
        s.execute(
            update(BridgeSpendingRow)
            .where(
                BridgeSpendingRow.origin == charge.origin,
                BridgeSpendingRow.day == charge.day,
                BridgeSpendingRow.currency == currency,
                BridgeSpendingRow.spent_minor + amount_minor <= day_cap,
            )
            .values(
                spent_minor=BridgeSpendingRow.spent_minor + amount_minor,
                clicks=BridgeSpendingRow.clicks + 1,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if moved != 1:
        spent = s.scalar(
            select(BridgeSpendingRow.spent_minor).where(
                BridgeSpendingRow.origin == charge.origin,
                BridgeSpendingRow.day == charge.day,
                BridgeSpendingRow.currency == currency,
            )
        )
        raise LimitExceeded(
            f"{charge.origin} has spent {int(spent or 0)} of its daily cap of {day_cap} "
            f"{currency} minor units today; this click costs {amount_minor}"
        )


def _receipt_json(r: ReceiptRow) -> dict[str, object]:
    return {
        "vendor_id": r.vendor_id,
        "ecoin_id": r.ecoin_id,
        "epoch": r.epoch,
        "from_index": r.from_index,
        "to_index": r.to_index,
        "amount_minor": r.amount_minor,
        "currency": r.currency,
        "item_id": r.item_id,
        "time_ms": r.time_ms,
        "url": r.url,
        "receipt": b64url_encode(r.envelope),
    }
