"""One-unit shortcuts over a wallet file, for the tests that look at or set one up.

The wallet's use cases open one unit of work per step (``store.begin``) and
call the repositories and :mod:`ewallet_client.store.ranges` themselves; a
test often wants one step alone: read a coin, approve an origin, draw one
range. :class:`StoreShortcuts` wraps a :class:`WalletStore` with one method
a step, each one line: open one unit, make one repository (or ``ranges``)
call, commit if it writes. They hold no logic of their own, so a test that
uses them checks what the repositories do.

* ``shortcuts(wallet)``: over the store of a :class:`Wallet` (no new engine);
* ``StoreShortcuts.open(wallet_dir)``: over a store of its own on that
  directory (as another process would open it), closed by ``close()``;
* the ``store`` fixture (tests/fakes/wallet_fixtures.py) yields one on a
  fresh directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ewallet_client.domain import CoinEvent, CoinView, WindowEvent, WindowState
from ewallet_client.store import WalletStore, ranges
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
from ewallet_client.wallet import Wallet
from netpay.spending import SpendingLimits
from netpay.v1 import statements_pb2 as pb

__all__ = ["StoreShortcuts", "shortcuts"]


def shortcuts(wallet: Wallet) -> StoreShortcuts:
    """The shortcuts over ``wallet``'s own store."""
    return StoreShortcuts(wallet.store)


class StoreShortcuts:
    """One unit of work a call over ``store`` (see the module docstring)."""

    def __init__(self, store: WalletStore) -> None:
        self.store = store
        self.begin = store.begin

    @classmethod
    def open(cls, wallet_dir: Path) -> StoreShortcuts:
        """A store of its own on ``wallet_dir``; ``close()`` closes it."""
        return cls(WalletStore(wallet_dir))

    def close(self) -> None:
        self.store.close()

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
        self.store.make_files_private()
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
        self.store.make_files_private()
        return claimed

    def autoload_attempted(
        self, currency: str, *, now_ms: int, ecoin_id: str | None, error: str | None
    ) -> None:
        with self.begin() as unit:
            unit.autoload.attempted(currency, now_ms=now_ms, ecoin_id=ecoin_id, error=error)
            unit.commit()
