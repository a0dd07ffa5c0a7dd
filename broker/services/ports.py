"""What the broker's use cases need from outside, and the one bundle that carries it.

- :class:`UnitOfWorkFactory`: ``uow()`` / ``uow(read_only=True)`` opens one
  unit of work (a :class:`broker.storage.Repos`); leaving it without
  ``commit()`` rolls back. :class:`broker.storage.BrokerStore` is the SQL
  one; the unit tests pass an in-memory fake.
- :class:`Bank`: every macro-payment (``broker.bank.DemoBank`` keeps its
  accounts in the broker's own ledger).
- :class:`BrokerIdentity`: the broker's id and signing key.
- :class:`Passwords`: the Argon2id hasher, with the dummy hash that unknown
  names are verified against (both paths cost the same).
- the clock, the limits, the currencies on sale and the seed vault of
  server-side wallets (None: no server-side coins).

:class:`BrokerPorts` bundles them; every area of :mod:`broker.services`
receives it in ``__init__``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broker.domain import AccountRef
from broker.seedvault import SeedVault
from broker.storage import Repos
from netpay.clock import Clock
from netpay.encoding import check_currency
from netpay.envelope import SigningKey
from netpay.errors import InvalidArgument
from netpay.limits import Limits

__all__ = [
    "Bank",
    "BrokerIdentity",
    "BrokerPorts",
    "Passwords",
    "UnitOfWorkFactory",
    "check_currencies",
    "default_password_hasher",
]


class UnitOfWorkFactory(Protocol):
    """``with uow() as repos: ...; repos.commit()``: one use case, one transaction."""

    def __call__(self, *, read_only: bool = False) -> AbstractContextManager[Repos]: ...


class Bank(Protocol):
    """The bank adapter: every macro-payment between the outside world and the broker.

    Every method runs inside the caller's unit of work, posts one balanced
    transaction whose idempotency key is ``key`` (unique per movement: a
    retry with the same key cannot post twice), and raises a typed
    NetPayError without posting anything when it cannot move the money.
    """

    def open_reader_account(
        self, repos: Repos, reader_id: str, currency: str, key: str, at_ms: int
    ) -> None:
        """A new reader's account (the demo bank also deposits its opening balance)."""

    def collect(
        self,
        repos: Repos,
        reader_id: str,
        amount_minor: int,
        currency: str,
        *,
        kind: str,
        key: str,
        at_ms: int,
        into: AccountRef | None = None,
    ) -> int:
        """The reader pays ``amount_minor`` into the broker float (a coin bought) or
        ``into`` another broker account (a loss paid back); :class:`Insufficient`
        without the funds. Returns the transaction id."""

    def pay_vendor(
        self, repos: Repos, vendor_id: str, amount_minor: int, currency: str, key: str, at_ms: int
    ) -> None:
        """Pay a vendor what the broker owes it (from its payable account)."""

    def refund_reader(
        self,
        repos: Repos,
        reader_id: str,
        currency: str,
        key: str,
        at_ms: int,
        *,
        from_float_minor: int,
        from_refund_balance_minor: int,
    ) -> None:
        """Pay a reader back: unclaimed coin value from the float and their refund
        balance (window credits, vendor refunds)."""


@dataclass(frozen=True)
class BrokerIdentity:
    """Who signs: the broker's id and its Ed25519 key."""

    broker_id: str
    key: SigningKey

    @property
    def public_key(self) -> bytes:
        return self.key.public_key


def default_password_hasher() -> PasswordHasher:
    """Argon2id with lighter-than-default parameters (OWASP's second option)."""
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


class Passwords:
    """Argon2id hashes of reader and wallet passwords."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or default_password_hasher()
        # Verified against for unknown usernames, so both paths cost the same.
        self.dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def check_currencies(currencies: Sequence[str]) -> tuple[str, ...]:
    """The currencies on sale, checked, in order, each once."""
    if not currencies:
        raise InvalidArgument("at least one currency")
    for currency in currencies:
        check_currency(currency)
    return tuple(dict.fromkeys(currencies))


@dataclass(frozen=True)
class BrokerPorts:
    """The collaborators every area shares."""

    uow: UnitOfWorkFactory
    identity: BrokerIdentity
    clock: Clock
    limits: Limits
    currencies: tuple[str, ...]
    bank: Bank
    passwords: Passwords
    # None: this broker sells no server-side coins (no wallet data key).
    vault: SeedVault | None = None

    def lease_expires_ms(self, now_ms: int) -> int:
        return now_ms + self.limits.lease_ttl_s * 1000
