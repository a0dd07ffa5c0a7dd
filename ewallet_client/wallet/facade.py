"""The :class:`Wallet`: one object over the wallet's rooms, for the CLI, the bridge and tests.

It composes the areas (``account``, ``coins``, ``limits``, ``autoload``,
``paying``, ``windows``, ``origins``) over one set of ports and hands each
call to the one that holds it; it keeps no state of its own beyond them
(the lifecycle: close the broker clients, the HTTP session and the file).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import requests

from ewallet_client import http
from ewallet_client.broker_client import BrokerApi, BrokerClient, BrokerFactory
from ewallet_client.domain import CoinView
from ewallet_client.store import (
    KEEP,
    ApprovedOrigin,
    AutoloadAgreement,
    BridgeCharge,
    Keep,
    Settings,
    WalletStore,
    WindowView,
)
from ewallet_client.wallet.account import Account
from ewallet_client.wallet.autoload import Autoload
from ewallet_client.wallet.coins import Coins
from ewallet_client.wallet.issuing import Issuer
from ewallet_client.wallet.limits import Limits
from ewallet_client.wallet.origins import Origins
from ewallet_client.wallet.paying import DEFAULT_MAX_AMOUNT_MINOR, Paying
from ewallet_client.wallet.ports import BrokerLink, PaymentNotes, WalletPorts
from ewallet_client.wallet.quotes import Quotes
from ewallet_client.wallet.results import (
    Authorization,
    AutoloadResult,
    ReadResult,
    WindowAuthorization,
    WindowCreditView,
)
from ewallet_client.wallet.window_clicks import WindowClicks
from ewallet_client.wallet.windows import Windows
from netpay.clock import Clock, SystemClock
from netpay.spending import SpendingLimits

__all__ = ["Wallet", "default_wallet_dir"]


def default_wallet_dir() -> Path:
    """``$NETPAY_WALLET_DIR``, else ``$XDG_DATA_HOME/netpay/wallet``, else
    ``~/.local/share/netpay/wallet``."""
    explicit = os.environ.get("NETPAY_WALLET_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "netpay" / "wallet"
    return Path.home() / ".local" / "share" / "netpay" / "wallet"


class Wallet:
    """The reader's client-side e-wallet."""

    def __init__(
        self,
        wallet_dir: Path,
        *,
        clock: Clock | None = None,
        session: requests.Session | None = None,
        broker_factory: BrokerFactory | None = None,
    ) -> None:
        self.wallet_dir = Path(wallet_dir)
        self.clock: Clock = clock or SystemClock()
        self.store = WalletStore(self.wallet_dir)
        self._own_session = session is None
        # No cookie jar: a window handle goes only where the wallet sends it.
        self.session = http.no_cookies(session or requests.Session())
        # How the wallet waits for Retry-After (tests replace it).
        self.sleep: Callable[[float], None] = time.sleep
        self._link = BrokerLink(self.store.begin, self.clock, broker_factory or BrokerClient)
        ports = WalletPorts(
            uow=self.store.begin,
            keep_private=self.store.make_files_private,
            clock=self.clock,
            http=self.session,
            link=self._link,
            notes=PaymentNotes(),
            sleep=self._sleep,
        )
        self._notes = ports.notes
        self._limits = Limits(ports)
        self._account = Account(ports, self._limits)
        self._coins = Coins(ports)
        self._autoload = Autoload(ports, self._coins)
        quotes = Quotes(ports)
        issuer = Issuer(ports, self._coins, self._autoload)
        self._windows = Windows(ports, quotes, issuer, self._limits, self._coins, self._autoload)
        self._paying = Paying(
            ports,
            quotes,
            issuer,
            self._limits,
            self._coins,
            self._autoload,
            WindowClicks(ports, quotes),
        )
        self._origins = Origins(ports)

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        self._link.close()
        if self._own_session:
            self.session.close()
        self.store.close()

    def __enter__(self) -> Wallet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what the last payment noted (the CLI prints it, the bridge logs it) ---

    @property
    def warnings(self) -> list[str]:
        return self._notes.warnings

    @property
    def autoloads(self) -> list[AutoloadResult]:
        return self._notes.autoloads

    @property
    def limits_sync_error(self) -> str | None:
        """Why the last set_spending_limits could not reach the broker (None: it did)."""
        return self._limits.sync_error

    def _sleep(self, seconds: float) -> None:
        self.sleep(seconds)  # looked up at each wait: a test may have replaced it

    def _broker(self, address: str | None = None) -> BrokerApi:
        return self._link.broker(address)

    # -- account (account.py) -------------------------------------------------

    def settings(self) -> Settings:
        return self._account.settings()

    def register(self, broker_addr: str, username: str, password: str) -> str:
        return self._account.register(broker_addr, username, password)

    def login(self, broker_addr: str | None, username: str, password: str) -> None:
        self._account.login(broker_addr, username, password)

    # -- coins (coins.py) -----------------------------------------------------

    def buy(self, units: int, unit_value_minor: int = 1, currency: str = "EUR") -> CoinView:
        return self._coins.buy(units, unit_value_minor, currency)

    def buy_server_side(
        self, units: int, wallet_password: str, unit_value_minor: int = 1, currency: str = "EUR"
    ) -> dict[str, object]:
        return self._coins.buy_server_side(units, wallet_password, unit_value_minor, currency)

    def resume_pending(self) -> list[CoinView]:
        return self._coins.resume_pending()

    def coins(self) -> list[CoinView]:
        return self._coins.coins()

    def bank_balances(self) -> list[dict[str, object]]:
        return self._coins.bank_balances()

    def history(self) -> list[dict[str, object]]:
        return self._coins.history()

    def broker_history(self, *, ecoin_id: str = "", limit: int = 100) -> list[dict[str, object]]:
        return self._coins.broker_history(ecoin_id=ecoin_id, limit=limit)

    # -- spending limits (limits.py) ------------------------------------------

    def set_spending_limits(
        self,
        currency: str,
        *,
        max_click_minor: int | Keep | None = KEEP,
        max_day_minor: int | Keep | None = KEEP,
    ) -> SpendingLimits:
        return self._limits.set_spending_limits(
            currency, max_click_minor=max_click_minor, max_day_minor=max_day_minor
        )

    def sync_spending_limits(self) -> list[SpendingLimits]:
        return self._limits.sync_spending_limits()

    def spending_report(self, currency: str | None = None) -> list[dict[str, object]]:
        return self._limits.spending_report(currency)

    # -- auto-load (autoload.py) ----------------------------------------------

    def set_autoload(
        self, currency: str, below_minor: int, units: int, unit_value_minor: int = 1
    ) -> AutoloadAgreement:
        return self._autoload.set_autoload(currency, below_minor, units, unit_value_minor)

    def autoload_off(self, currency: str) -> AutoloadAgreement | None:
        return self._autoload.autoload_off(currency)

    def autoload_agreements(self) -> list[AutoloadAgreement]:
        return self._autoload.autoload_agreements()

    def autoload(self, currency: str) -> AutoloadAgreement | None:
        return self._autoload.autoload(currency)

    # -- paying (paying.py) ---------------------------------------------------

    def authorize(self, url: str, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR) -> str:
        return self._paying.authorize_payment(url, max_amount_minor).header

    def authorize_payment(
        self,
        url: str,
        max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR,
        *,
        charge: BridgeCharge | None = None,
    ) -> Authorization:
        return self._paying.authorize_payment(url, max_amount_minor, charge=charge)

    def read(self, url: str, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR) -> ReadResult:
        return self._paying.read(url, max_amount_minor)

    # -- windows (windows.py) -------------------------------------------------

    def authorize_window(
        self,
        url: str,
        units: int,
        max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR,
        *,
        charge: BridgeCharge | None = None,
    ) -> WindowAuthorization:
        return self._windows.authorize_window(url, units, max_amount_minor, charge=charge)

    def open_window(
        self, url: str, units: int, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR
    ) -> WindowView:
        return self._windows.open_window(url, units, max_amount_minor)

    def close_window(self, url: str) -> WindowCreditView:
        return self._windows.close_window(url)

    def windows(self) -> list[WindowView]:
        return self._windows.windows()

    def open_windows(self) -> list[WindowView]:
        return self._windows.open_windows()

    def window_handle(self, window_id: int) -> str | None:
        return self._windows.window_handle(window_id)

    # -- the browser bridge's origins (origins.py) ----------------------------

    def approve_origin(
        self, origin: str, *, max_click_minor: int | None, max_day_minor: int | None
    ) -> ApprovedOrigin:
        return self._origins.approve_origin(
            origin, max_click_minor=max_click_minor, max_day_minor=max_day_minor
        )

    def revoke_origin(self, origin: str) -> bool:
        return self._origins.revoke_origin(origin)

    def approved_origin(self, origin: str) -> ApprovedOrigin | None:
        return self._origins.approved_origin(origin)

    def approved_origins(self) -> list[ApprovedOrigin]:
        return self._origins.approved_origins()

    def bridge_spending(self, origin: str, day: int) -> dict[str, tuple[int, int]]:
        return self._origins.bridge_spending(origin, day)
