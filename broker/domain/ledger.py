"""The double-entry ledger: accounts, entries and balanced transactions. No I/O.

Money moves only as a balanced :class:`Transaction`: its entries sum to zero
in every currency, asserted when it is made and again before it is written.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass

__all__ = [
    "DEMO_FUNDING_OWNER",
    "AccountKind",
    "AccountRef",
    "LedgerEntry",
    "Transaction",
    "assert_balanced",
    "sums_by_currency",
]

DEMO_FUNDING_OWNER = "bank:demo-funding"


class AccountKind(enum.StrEnum):
    READER_BANK = "reader_bank"  # a reader's account at the (demo) bank
    BROKER_FLOAT = "broker_float"  # money the broker holds for outstanding coins
    VENDOR_PAYABLE = "vendor_payable"  # redeemed, owed to a vendor until paid out
    VENDOR_BANK = "vendor_bank"  # a vendor's account at the (demo) bank
    READER_REFUND = "reader_refund"  # owed back to a reader (window credits, refunds)
    BROKER_LOSS = "broker_loss"  # the broker's losses (disputes); negative = lost
    EXTERNAL = "external"  # outside the books: the demo bank's funding source


@dataclass(frozen=True)
class AccountRef:
    kind: AccountKind
    owner: str  # reader id, "broker", or the external source's name
    currency: str

    @classmethod
    def reader(cls, reader_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.READER_BANK, reader_id, currency)

    @classmethod
    def broker_float(cls, currency: str) -> AccountRef:
        return cls(AccountKind.BROKER_FLOAT, "broker", currency)

    @classmethod
    def demo_funding(cls, currency: str) -> AccountRef:
        return cls(AccountKind.EXTERNAL, DEMO_FUNDING_OWNER, currency)

    @classmethod
    def vendor_payable(cls, vendor_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.VENDOR_PAYABLE, vendor_id, currency)

    @classmethod
    def vendor_bank(cls, vendor_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.VENDOR_BANK, vendor_id, currency)

    @classmethod
    def reader_refund(cls, reader_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.READER_REFUND, reader_id, currency)

    @classmethod
    def broker_loss(cls, currency: str) -> AccountRef:
        return cls(AccountKind.BROKER_LOSS, "broker", currency)


@dataclass(frozen=True)
class LedgerEntry:
    """One signed amount on one account: entries are never changed once written."""

    account: AccountRef
    amount_minor: int


@dataclass(frozen=True)
class Transaction:
    """A balanced set of entries: they sum to 0 in every currency."""

    kind: str
    idempotency_key: str
    at_ms: int
    entries: tuple[LedgerEntry, ...]

    def __post_init__(self) -> None:
        assert self.kind and self.idempotency_key
        assert len(self.entries) >= 2, "a transaction moves money between accounts"
        for entry in self.entries:
            assert isinstance(entry.amount_minor, int) and not isinstance(entry.amount_minor, bool)
            assert entry.amount_minor != 0, "zero entries are not written"
        assert_balanced(self.entries)

    @classmethod
    def transfer(
        cls,
        kind: str,
        idempotency_key: str,
        at_ms: int,
        *,
        source: AccountRef,
        destination: AccountRef,
        amount_minor: int,
    ) -> Transaction:
        """``amount_minor`` from ``source`` to ``destination`` (same currency)."""
        assert amount_minor > 0 and source.currency == destination.currency
        return cls(
            kind,
            idempotency_key,
            at_ms,
            (LedgerEntry(source, -amount_minor), LedgerEntry(destination, amount_minor)),
        )


def sums_by_currency(entries: tuple[LedgerEntry, ...]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        totals[entry.account.currency] += entry.amount_minor
    return dict(totals)


def assert_balanced(entries: tuple[LedgerEntry, ...]) -> None:
    totals = sums_by_currency(entries)
    assert all(total == 0 for total in totals.values()), f"unbalanced transaction: {totals}"
