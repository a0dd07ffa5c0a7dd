"""The wallet file ``<wallet_dir>/wallet.sqlite`` and its unit-of-work factory.

The directory is mode 0700, the database and its ``-wal``/``-shm`` files are
0600 (:meth:`WalletStore.make_files_private`, also after a chain's seed and
pebbles are written). ``store.begin`` is ``UnitOfWork(engine, WalletUnit)``:
the wallet's use cases (:mod:`ewallet_client.wallet`) open one unit per step
and call the repositories and :mod:`ewallet_client.store.ranges`.

The other methods are one-unit shortcuts over the same repositories (one
line each, no logic of their own), for tests and tools that look at or set
up a wallet file; the use cases never call them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.exc import OperationalError

from ewallet_client.domain import CoinEvent, CoinView, WindowEvent, WindowState
from ewallet_client.store import ranges
from ewallet_client.store.records import (
    KEEP,
    Allocation,
    ApprovedOrigin,
    AutoloadAgreement,
    BridgeCharge,
    Keep,
    NewCoin,
    PendingCoin,
    Settings,
    WindowRequest,
    WindowView,
)
from ewallet_client.store.tables import Base
from ewallet_client.store.unit import WalletUnit
from netpay.files import ensure_private_dir
from netpay.spending import SpendingLimits
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from netpay.v1 import statements_pb2 as pb

__all__ = ["DB_NAME", "WalletStore"]

DB_NAME = "wallet.sqlite"


class WalletStore:
    """The wallet's persistent state: one SQLite file, units of work over it."""

    def __init__(self, wallet_dir: Path) -> None:
        ensure_private_dir(wallet_dir)
        self.path = wallet_dir / DB_NAME
        self._engine = make_engine(sqlite_url(self.path), private=True)
        self.begin = UnitOfWork(self._engine, WalletUnit)
        try:
            self.begin.create_all(Base)
        except OperationalError:  # another process created the tables meanwhile
            self.begin.create_all(Base)
        with self.begin() as unit:
            if unit.settings.ensure():
                unit.commit()
        self.make_files_private()

    def make_files_private(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            p = self.path.with_name(self.path.name + suffix)
            if p.exists() and p.stat().st_mode & 0o077:
                p.chmod(0o600)

    def close(self) -> None:
        self._engine.dispose()

    # -- one-unit shortcuts (tests and tools) ---------------------------------

    def settings(self) -> Settings:
        with self.begin() as unit:
            return unit.settings.get()

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
        with self.begin() as unit:
            pending = unit.coins.insert_pending(coin, now_ms)
            unit.commit()
        self.make_files_private()
        return pending

    def change_state(
        self,
        ecoin_id: str,
        event: CoinEvent,
        *,
        touchstone: bytes | None = None,
        expires_at_ms: int | None = None,
    ) -> CoinView:
        with self.begin() as unit:
            view = unit.coins.change_state(
                ecoin_id, event, touchstone=touchstone, expires_at_ms=expires_at_ms
            )
            unit.commit()
            return view

    def coin(self, ecoin_id: str) -> CoinView:
        with self.begin() as unit:
            return unit.coins.get(ecoin_id)

    def coins(self) -> list[CoinView]:
        with self.begin() as unit:
            return unit.coins.all()

    def word(self, ecoin_id: str, j: int) -> bytes:
        with self.begin() as unit:
            return unit.coins.word(ecoin_id, j)

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
        request = ranges.RangeRequest(
            amount_minor, currency, realm, url, now_ms, skew_ms, charge, window, spend
        )
        return ranges.allocate(self.begin, request)

    def resync(self, ecoin_id: str, index: int) -> bool:
        with self.begin() as unit:
            moved = ranges.resync(unit, ecoin_id, index)
            unit.commit()
            return moved

    def outstanding_words(self, ecoin_id: str) -> int:
        with self.begin() as unit:
            return unit.receipts.outstanding_words(ecoin_id)

    def window_opened(
        self, window_id: int, *, epoch: int, expires_at_ms: int, handle: str, consumed_index: int
    ) -> WindowView:
        with self.begin() as unit:
            view = ranges.window_opened(
                unit,
                window_id,
                epoch=epoch,
                expires_at_ms=expires_at_ms,
                handle=handle,
                consumed_index=consumed_index,
            )
            unit.commit()
            return view

    def change_window(
        self,
        window_id: int,
        event: WindowEvent,
        *,
        now_ms: int,
        credit: pb.WindowCredit | None = None,
        credit_envelope: bytes | None = None,
    ) -> WindowView:
        with self.begin() as unit:
            view = unit.windows.change(
                window_id, event, now_ms=now_ms, credit=credit, credit_envelope=credit_envelope
            )
            unit.commit()
            return view

    def window(self, window_id: int) -> WindowView:
        with self.begin(read_only=True) as unit:
            return unit.windows.get(window_id)

    def windows(self, *, states: tuple[WindowState, ...] | None = None) -> list[WindowView]:
        with self.begin(read_only=True) as unit:
            return unit.windows.all(states=states)

    def window_handle(self, window_id: int) -> str | None:
        with self.begin(read_only=True) as unit:
            return unit.windows.handle(window_id)

    def approve_origin(
        self, origin: str, *, max_click_minor: int | None, max_day_minor: int | None, now_ms: int
    ) -> ApprovedOrigin:
        with self.begin() as unit:
            approved = unit.bridge.approve(
                origin, max_click_minor=max_click_minor, max_day_minor=max_day_minor, now_ms=now_ms
            )
            unit.commit()
            return approved

    def revoke_origin(self, origin: str) -> bool:
        with self.begin() as unit:
            gone = unit.bridge.revoke(origin)
            unit.commit()
            return gone

    def approved_origin(self, origin: str) -> ApprovedOrigin | None:
        with self.begin(read_only=True) as unit:
            return unit.bridge.approved(origin)

    def approved_origins(self) -> list[ApprovedOrigin]:
        with self.begin(read_only=True) as unit:
            return unit.bridge.all()

    def bridge_spending(self, origin: str, day: int) -> dict[str, tuple[int, int]]:
        with self.begin(read_only=True) as unit:
            return unit.bridge.spending(origin, day)

    def spending_limits(self, currency: str) -> SpendingLimits | None:
        with self.begin(read_only=True) as unit:
            return unit.spending.limits(currency)

    def all_spending_limits(self) -> list[SpendingLimits]:
        with self.begin(read_only=True) as unit:
            return unit.spending.all_limits()

    def set_spending_limits(
        self,
        currency: str,
        *,
        now_ms: int,
        max_click_minor: int | Keep | None = KEEP,
        max_day_minor: int | Keep | None = KEEP,
    ) -> SpendingLimits:
        with self.begin() as unit:
            limits = unit.spending.set_limits(
                currency,
                now_ms=now_ms,
                max_click_minor=max_click_minor,
                max_day_minor=max_day_minor,
            )
            unit.commit()
            return limits

    def spending(self, day: int) -> dict[str, tuple[int, int]]:
        with self.begin(read_only=True) as unit:
            return unit.spending.day(day)

    def usable_value_minor(self, currency: str, *, now_ms: int, skew_ms: int) -> int:
        with self.begin(read_only=True) as unit:
            return unit.coins.usable_value_minor(currency, now_ms=now_ms, skew_ms=skew_ms)

    def set_autoload(
        self, currency: str, *, below_minor: int, units: int, unit_value_minor: int, now_ms: int
    ) -> AutoloadAgreement:
        with self.begin() as unit:
            agreement = unit.autoload.set(
                currency,
                below_minor=below_minor,
                units=units,
                unit_value_minor=unit_value_minor,
                now_ms=now_ms,
            )
            unit.commit()
            return agreement

    def autoload_off(self, currency: str) -> AutoloadAgreement | None:
        with self.begin() as unit:
            agreement = unit.autoload.off(currency)
            unit.commit()
            return agreement

    def autoload(self, currency: str) -> AutoloadAgreement | None:
        with self.begin(read_only=True) as unit:
            return unit.autoload.get(currency)

    def autoloads(self, *, enabled_only: bool = True) -> list[AutoloadAgreement]:
        with self.begin(read_only=True) as unit:
            return unit.autoload.all(enabled_only=enabled_only)

    def autoload_pending(self, currency: str) -> PendingCoin | None:
        with self.begin(read_only=True) as unit:
            return unit.autoload.pending_coin(currency)

    def claim_autoload(
        self, coin: NewCoin, *, now_ms: int, skew_ms: int
    ) -> tuple[PendingCoin, bool] | None:
        with self.begin() as unit:
            claimed = unit.autoload.claim(coin, now_ms=now_ms, skew_ms=skew_ms)
            unit.commit()
        self.make_files_private()
        return claimed

    def autoload_attempted(
        self, currency: str, *, now_ms: int, ecoin_id: str | None, error: str | None
    ) -> None:
        with self.begin() as unit:
            unit.autoload.attempted(currency, now_ms=now_ms, ecoin_id=ecoin_id, error=error)
            unit.commit()
