"""What the wallet's use cases need from outside, bundled once (:class:`WalletPorts`).

* the unit-of-work factory over the wallet file (:class:`WalletUow`) and the
  hook that keeps the file's modes private after a seed is written;
* the clock, the HTTP session (no cookie jar) and how to wait for
  ``Retry-After``;
* :class:`BrokerLink`: the wallet's identity at its broker — the client per
  address (:class:`~ewallet_client.broker_client.BrokerApi`), the pinned
  settings and the login token;
* :class:`PaymentNotes`: the warnings and auto-loads of the payment running
  now (the CLI prints them, the bridge logs them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from ewallet_client.broker_client import BrokerApi, BrokerFactory
from ewallet_client.store import Settings, WalletUow
from ewallet_client.wallet.results import AutoloadResult
from netpay.clock import Clock
from netpay.errors import PreconditionFailed, Unauthenticated

__all__ = ["BrokerLink", "PaymentNotes", "WalletPorts", "log"]

# One logger for the whole wallet, named as before it had rooms.
log = logging.getLogger("ewallet_client.wallet")


@dataclass
class PaymentNotes:
    """The warnings and auto-loads of the last read/authorize (one payment at a time)."""

    warnings: list[str] = field(default_factory=list)
    # Auto-loads the last payment ran (at most one; the CLI reports them).
    autoloads: list[AutoloadResult] = field(default_factory=list)
    autoload_ran: bool = False

    def begin(self) -> None:
        """A new payment: forget the last one's notes."""
        self.warnings = []
        self.autoloads = []
        self.autoload_ran = False

    def warn(self, message: str) -> None:
        log.debug("warning: %s", message)
        self.warnings.append(message)


class BrokerLink:
    """The wallet's broker: one client per address, the pinned settings, the token."""

    def __init__(self, uow: WalletUow, clock: Clock, factory: BrokerFactory) -> None:
        self._uow = uow
        self._clock = clock
        self._factory = factory
        self._brokers: dict[str, BrokerApi] = {}

    def settings(self) -> Settings:
        with self._uow() as unit:
            return unit.settings.get()

    def save_settings(self, **changes: object) -> Settings:
        with self._uow() as unit:
            unit.settings.save(**changes)
            unit.commit()
        return self.settings()

    def broker(self, address: str | None = None) -> BrokerApi:
        address = address or self.settings().broker_addr
        if not address:
            raise PreconditionFailed(
                "this wallet has no broker: run `netpay wallet register --broker H:P ...`"
            )
        if address not in self._brokers:
            self._brokers[address] = self._factory(address)
        return self._brokers[address]

    def token(self) -> str:
        st = self.settings()
        if not st.token:
            raise Unauthenticated("not logged in: run `netpay wallet login`")
        if st.token_expires_at_ms is not None and st.token_expires_at_ms <= self._clock.now_ms():
            raise Unauthenticated("the login has expired: run `netpay wallet login`")
        return st.token

    def close(self) -> None:
        for client in self._brokers.values():
            client.close()
        self._brokers.clear()


@dataclass(frozen=True)
class WalletPorts:
    """The collaborators every area of the wallet shares."""

    uow: WalletUow
    keep_private: Callable[[], None]  # after a chain's seed and pebbles are written
    clock: Clock
    http: requests.Session
    link: BrokerLink
    notes: PaymentNotes
    sleep: Callable[[float], None]  # how the wallet waits for Retry-After

    def skew_ms(self) -> int:
        """The broker's clock skew allowance, in milliseconds."""
        return self.link.settings().max_skew_s * 1000
