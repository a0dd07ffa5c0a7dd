"""An in-memory unit of work for the broker's use cases (cosmicpython's FakeUnitOfWork).

``FakeUnitOfWork`` is what :class:`broker.services.BrokerServices` takes in
place of a :class:`broker.storage.BrokerStore`: calling it opens a unit whose
fake repositories work on a copy of the committed state (copy-on-begin);
``commit()`` publishes the copy, and leaving the block without it throws the
copy away, so a refused use case really leaves nothing behind.

The fake repositories implement only the methods the unit-tested use cases
call (identity, coins, custody), with the SQL ones' semantics: a unique key
taken twice is ``AlreadyExists`` (what ``BrokerStore`` makes of an
IntegrityError), a compare-and-set answers False when the row moved.
:meth:`FakeUnitOfWork.interleave` lets a test land another writer's commit
between a use case's read and its compare-and-set.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from broker.domain import (
    AccountKind,
    AccountRef,
    CoinRecordView,
    CoinState,
    EpochOpening,
    EpochView,
    IndexedWord,
    Transaction,
    assert_balanced,
)
from broker.storage import StoredCoin
from netpay.errors import AlreadyExists

__all__ = ["FakeCoin", "FakeState", "FakeUnit", "FakeUnitOfWork"]


def _record(row: Any) -> SimpleNamespace:
    """A plain copy of an ORM row (its columns, with their Python-side defaults)."""
    values = {}
    for column in type(row).__table__.columns:
        value = getattr(row, column.key)
        default = column.default
        if value is None and default is not None and default.is_scalar:
            value = default.arg
        values[column.key] = value
    return SimpleNamespace(**values)


def _duplicate() -> AlreadyExists:
    return AlreadyExists("a record with that key already exists")


@dataclass
class FakeCoin:
    """A coin's row: its custody record and what the broker keeps beside it."""

    view: CoinRecordView
    owner: str
    currency: str
    wallet_kind: str
    root: bytes
    touchstone: bytes
    issued_at_ms: int

    def stored(self) -> StoredCoin:
        return StoredCoin(self.view, self.owner, self.currency, self.wallet_kind, self.touchstone)


@dataclass
class FakeState:
    """Everything the fake database holds; compared whole to prove nothing moved."""

    readers: dict[str, SimpleNamespace] = field(default_factory=dict)
    reader_tokens: dict[bytes, SimpleNamespace] = field(default_factory=dict)
    login_failures: list[tuple[str, int]] = field(default_factory=list)
    vendors: dict[str, SimpleNamespace] = field(default_factory=dict)
    portal_sessions: dict[bytes, tuple[str, int]] = field(default_factory=dict)
    accounts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    transactions: dict[str, int] = field(default_factory=dict)  # idempotency key -> id
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # tx id, account, amount
    coins: dict[str, FakeCoin] = field(default_factory=dict)
    epochs: dict[tuple[str, int], EpochView] = field(default_factory=dict)
    purchases: dict[tuple[str, str], SimpleNamespace] = field(default_factory=dict)
    refund_units: dict[str, int] = field(default_factory=dict)  # kept window credits

    def balance(self, ref: AccountRef) -> int:
        account = self.accounts.get((ref.kind.value, ref.owner, ref.currency))
        return sum(amount for _, acc, amount in self.entries if acc == account)


class _Repo:
    def __init__(self, state: FakeState) -> None:
        self._state = state


class FakeReaderRepo(_Repo):
    def add(self, reader_id: str, username: str, password_hash: str, now_ms: int) -> None:
        if reader_id in self._state.readers or any(
            r.username == username for r in self._state.readers.values()
        ):
            raise _duplicate()
        self._state.readers[reader_id] = SimpleNamespace(
            reader_id=reader_id,
            username=username,
            password_hash=password_hash,
            created_at_ms=now_ms,
        )

    def by_username(self, username: str) -> SimpleNamespace | None:
        return next((r for r in self._state.readers.values() if r.username == username), None)

    def get(self, reader_id: str, *, for_update: bool = False) -> SimpleNamespace | None:
        return self._state.readers.get(reader_id)

    def set_password_hash(self, reader_id: str, old_hash: str, new_hash: str) -> bool:
        reader = self._state.readers.get(reader_id)
        if reader is None or reader.password_hash != old_hash:
            return False
        reader.password_hash = new_hash
        return True

    def delete_tokens(self, reader_id: str) -> None:
        tokens = self._state.reader_tokens
        for digest in [d for d, t in tokens.items() if t.reader_id == reader_id]:
            del tokens[digest]

    def add_token(self, token_sha256: bytes, reader_id: str, now_ms: int, expires_ms: int) -> None:
        if token_sha256 in self._state.reader_tokens:
            raise _duplicate()
        self._state.reader_tokens[token_sha256] = SimpleNamespace(
            token_sha256=token_sha256,
            reader_id=reader_id,
            created_at_ms=now_ms,
            expires_at_ms=expires_ms,
        )

    def reader_for_token(self, token_sha256: bytes, now_ms: int) -> str | None:
        token = self._state.reader_tokens.get(token_sha256)
        return token.reader_id if token is not None and token.expires_at_ms > now_ms else None

    def prune_tokens(self, reader_id: str, now_ms: int) -> None:
        tokens = self._state.reader_tokens
        for digest in [
            d for d, t in tokens.items() if t.reader_id == reader_id and t.expires_at_ms <= now_ms
        ]:
            del tokens[digest]

    def recent_failures(self, username: str, since_ms: int) -> list[int]:
        return sorted(
            at for name, at in self._state.login_failures if name == username and at >= since_ms
        )

    def add_failure(self, username: str, now_ms: int) -> None:
        self._state.login_failures.append((username, now_ms))

    def clear_failures(self, username: str) -> None:
        self._state.login_failures[:] = [f for f in self._state.login_failures if f[0] != username]

    def prune_failures(self, before_ms: int) -> None:
        self._state.login_failures[:] = [f for f in self._state.login_failures if f[1] >= before_ms]


class FakeVendorRepo(_Repo):
    def get(self, vendor_id: str, *, for_update: bool = False) -> SimpleNamespace | None:
        return self._state.vendors.get(vendor_id)

    def add(self, row: Any) -> None:
        if row.vendor_id in self._state.vendors:
            raise _duplicate()
        self._state.vendors[row.vendor_id] = _record(row)

    def _by(self, attribute: str, digest: bytes) -> SimpleNamespace | None:
        return next(
            (v for v in self._state.vendors.values() if getattr(v, attribute) == digest), None
        )

    def by_enrollment_token(self, token_sha256: bytes) -> SimpleNamespace | None:
        return self._by("enrollment_token_sha256", token_sha256)

    def by_vendor_token(self, token_sha256: bytes) -> SimpleNamespace | None:
        return self._by("vendor_token_sha256", token_sha256)

    def public_key(self, vendor_id: str) -> bytes | None:
        vendor = self._state.vendors.get(vendor_id)
        return None if vendor is None else vendor.public_key

    def flush(self) -> None:
        pass


class FakePortalRepo(_Repo):
    def delete_sessions(self, reader_id: str, *, keep: bytes | None = None) -> None:
        sessions = self._state.portal_sessions
        for digest in [d for d, (r, _) in sessions.items() if r == reader_id and d != keep]:
            del sessions[digest]


class FakeLedgerRepo(_Repo):
    def account_id(self, ref: AccountRef, *, for_update: bool = False) -> int:
        key = (ref.kind.value, ref.owner, ref.currency)
        return self._state.accounts.setdefault(key, len(self._state.accounts) + 1)

    def balance_minor(self, ref: AccountRef, *, for_update: bool = False) -> int:
        account = self.account_id(ref)
        return sum(amount for _, acc, amount in self._state.entries if acc == account)

    def balances_of(self, kind: AccountKind, owner: str) -> dict[str, int]:
        found = {
            currency: self.balance_minor(AccountRef(kind, owner, currency))
            for k, o, currency in self._state.accounts
            if (k, o) == (kind.value, owner)
        }
        return dict(sorted(found.items()))

    def post(self, tx: Transaction) -> int:
        assert_balanced(tx.entries)
        if tx.idempotency_key in self._state.transactions:
            raise _duplicate()
        transaction_id = len(self._state.transactions) + 1
        self._state.transactions[tx.idempotency_key] = transaction_id
        for entry in tx.entries:
            self._state.entries.append(
                (transaction_id, self.account_id(entry.account), entry.amount_minor)
            )
        return transaction_id


class FakeCoinRepo(_Repo):
    def __init__(self, state: FakeState, before_write: Callable[[int], None]) -> None:
        super().__init__(state)
        self._before_write = before_write
        self._writes = 0

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
        if coin.ecoin_id in self._state.coins:
            raise _duplicate()
        self._state.coins[coin.ecoin_id] = FakeCoin(
            coin, owner, currency, wallet_kind, root, touchstone, issued_at_ms
        )

    def get(self, ecoin_id: str, *, for_update: bool = False) -> StoredCoin | None:
        coin = self._state.coins.get(ecoin_id)
        return None if coin is None else coin.stored()

    def exists(self, ecoin_id: str) -> bool:
        return ecoin_id in self._state.coins

    def list_for_owner(self, owner: str, limit: int) -> list[StoredCoin]:
        mine = [c for c in self._state.coins.values() if c.owner == owner]
        mine.sort(key=lambda c: c.view.ecoin_id)
        mine.sort(key=lambda c: c.issued_at_ms, reverse=True)
        return [c.stored() for c in mine[:limit]]

    def apply(self, before: CoinRecordView, after: CoinRecordView) -> bool:
        """Compare-and-set on (epoch, state, latest index), as ``UPDATE ... WHERE``."""
        assert before.ecoin_id == after.ecoin_id
        self._writes += 1
        self._before_write(self._writes)
        coin = self._state.coins.get(before.ecoin_id)
        if coin is None or (coin.view.epoch, coin.view.state, coin.view.latest.index) != (
            before.epoch,
            before.state,
            before.latest.index,
        ):
            return False
        coin.view = after
        return True

    def epoch(self, ecoin_id: str, epoch: int) -> EpochView | None:
        return self._state.epochs.get((ecoin_id, epoch))

    def epochs(self, ecoin_id: str) -> list[EpochView]:
        return [e for (c, _), e in sorted(self._state.epochs.items()) if c == ecoin_id]

    def open_epoch(self, ecoin_id: str, epoch: EpochView, now_ms: int) -> None:
        assert epoch.end is None
        if (ecoin_id, epoch.epoch) in self._state.epochs:
            raise _duplicate()
        self._state.epochs[(ecoin_id, epoch.epoch)] = epoch

    def close_epoch(
        self, ecoin_id: str, epoch: int, end: IndexedWord | int, now_ms: int, reason: EpochOpening
    ) -> bool:
        found = self._state.epochs.get((ecoin_id, epoch))
        if found is None or found.end_index is not None:
            return False
        closed = replace(found, forced_end=end) if isinstance(end, int) else replace(found, end=end)
        self._state.epochs[(ecoin_id, epoch)] = closed
        return True


class FakePurchaseRepo(_Repo):
    def get(self, reader_id: str, request_id: str) -> SimpleNamespace | None:
        return self._state.purchases.get((reader_id, request_id))

    def add(self, row: Any) -> None:
        key = (row.reader_id, row.request_id)
        if key in self._state.purchases or any(
            p.ecoin_id == row.ecoin_id for p in self._state.purchases.values()
        ):
            raise _duplicate()
        self._state.purchases[key] = _record(row)


class FakeRedemptionRepo(_Repo):
    def flags(self, reader_id: str, *, for_update: bool = False) -> list[SimpleNamespace]:
        return []  # nobody is flagged in these tests

    def pending_refund_units(self, ecoin_id: str) -> int:
        return self._state.refund_units.get(ecoin_id, 0)

    def claimed_words(self, ecoin_id: str) -> list[IndexedWord]:
        return []  # nothing is redeemed in these tests


class FakeUnit:
    """One unit of work: the fake repositories over a working copy of the state."""

    def __init__(self, owner: FakeUnitOfWork, working: FakeState) -> None:
        self._owner = owner
        self._working = working
        self.readers = FakeReaderRepo(working)
        self.vendors = FakeVendorRepo(working)
        self.portal = FakePortalRepo(working)
        self.ledger = FakeLedgerRepo(working)
        self.coins = FakeCoinRepo(working, lambda n: owner._land_interleaved(working, n))
        self.purchases = FakePurchaseRepo(working)
        self.redemption = FakeRedemptionRepo(working)

    def commit(self) -> None:
        self._owner._publish(self._working)


class FakeUnitOfWork:
    """``with uow() as repos: ...; repos.commit()`` over dicts; see the module docstring."""

    def __init__(self, state: FakeState | None = None) -> None:
        self.state = state or FakeState()
        self.committed = False  # did the last unit commit?
        self.commits = 0
        self.units = 0
        self._interleaved: list[tuple[int, Callable[[FakeState], None]]] = []

    @contextmanager
    def __call__(self, *, read_only: bool = False) -> Iterator[FakeUnit]:
        self.units += 1
        self.committed = False
        # Copy-on-begin: nothing reaches self.state unless the unit commits.
        yield FakeUnit(self, copy.deepcopy(self.state))

    def snapshot(self) -> FakeState:
        return copy.deepcopy(self.state)

    def interleave(self, change: Callable[[FakeState], None], *, at_write: int = 1) -> None:
        """Another writer commits ``change`` just before the next unit's ``at_write``-th
        compare-and-set of a coin: it lands in the committed state and in that unit's
        view of it (as an ``UPDATE ... WHERE`` sees the newest committed row)."""
        self._interleaved.append((at_write, change))

    def _land_interleaved(self, working: FakeState, write: int) -> None:
        for entry in [e for e in self._interleaved if e[0] == write]:
            self._interleaved.remove(entry)
            entry[1](self.state)
            entry[1](working)

    def _publish(self, working: FakeState) -> None:
        self.state = copy.deepcopy(working)
        self.committed = True
        self.commits += 1
