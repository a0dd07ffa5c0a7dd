"""``netpay broker reconcile``: bank vs ledger vs claims, per currency, as of a day's end.

Money is conserved (protocol.md, "Redemption"):

    reader debits = outstanding coin value + redeemed + refunded - broker losses

Each term comes from a different record, so a bug in any one of them shows:

- reader debits: the purchases table (what each coin cost its reader), plus
  what flagged readers paid back to the broker-loss account;
- outstanding coin value: the broker float account in the ledger;
- redeemed: the accepted claims, less the vendor refunds netted;
- refunded: the window credits netted plus the vendor refunds (the reader's
  refund balance) plus the unclaimed value of expired coins refunded after the
  grace period;
- broker losses: the broker-loss account in the ledger (dispute payouts).

``conservation_cents`` is ``debits - (outstanding + redeemed + refunded -
losses)``: 0 in every currency when the books balance. The report also
checks that every ledger transaction balances, that what the bank paid
vendors plus what they are still owed equals what was redeemed, and lists
the disputes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from broker.domain import AccountKind
from broker.services.ports import UnitOfWorkFactory
from broker.storage import Repos
from netpay.errors import InvalidArgument

__all__ = ["Reconciliation", "day_bounds_ms", "reconcile"]

_MAX_DISPUTES = 1000
_CSV_HEADER = [
    "transaction_id",
    "at_ms",
    "kind",
    "idempotency_key",
    "account_kind",
    "owner",
    "currency",
    "amount_minor",
]


@dataclass(frozen=True)
class Reconciliation:
    day: str
    conservation_cents: dict[str, int]
    reader_debits_cents: dict[str, int]
    outstanding_cents: dict[str, int]
    redeemed_cents: dict[str, int]
    refunded_cents: dict[str, int]
    broker_losses_cents: dict[str, int]
    vendor_paid_cents: dict[str, int]
    vendor_owed_cents: dict[str, int]
    payout_mismatch_cents: dict[str, int]
    unbalanced_transactions: list[int]
    disputes: list[dict[str, Any]]
    day_purchases_cents: dict[str, int]
    day_redeemed_cents: dict[str, int]

    @property
    def balanced(self) -> bool:
        return (
            all(v == 0 for v in self.conservation_cents.values())
            and all(v == 0 for v in self.payout_mismatch_cents.values())
            and not self.unbalanced_transactions
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "balanced": self.balanced,
            "conservation_cents": self.conservation_cents,
            "reader_debits_cents": self.reader_debits_cents,
            "outstanding_cents": self.outstanding_cents,
            "redeemed_cents": self.redeemed_cents,
            "refunded_cents": self.refunded_cents,
            "broker_losses_cents": self.broker_losses_cents,
            "vendor_paid_cents": self.vendor_paid_cents,
            "vendor_owed_cents": self.vendor_owed_cents,
            "payout_mismatch_cents": self.payout_mismatch_cents,
            "unbalanced_transactions": self.unbalanced_transactions,
            "disputes": self.disputes,
            "day_purchases_cents": self.day_purchases_cents,
            "day_redeemed_cents": self.day_redeemed_cents,
        }


def day_bounds_ms(day: str) -> tuple[int, int]:
    """``[start, end)`` of a UTC day ``YYYY-MM-DD`` in Unix milliseconds."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError as exc:
        raise InvalidArgument(f"--day is YYYY-MM-DD, not {day[:20]!r}") from exc
    start = datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


@dataclass(frozen=True)
class _Records:
    """The terms of the books, each summed per currency from its own record."""

    debits: dict[str, int]
    day_purchases: dict[str, int]
    claimed: dict[str, int]
    day_claimed: dict[str, int]
    vendor_refunds: dict[str, int]
    netted_credits: dict[str, int]
    expiry_refunds: dict[str, int]
    recovered: dict[str, int]
    outstanding: dict[str, int]
    losses: dict[str, int]
    vendor_paid: dict[str, int]
    vendor_owed: dict[str, int]
    unbalanced: list[int]
    disputes: list[dict[str, Any]]


def _records(repos: Repos, start_ms: int, end_ms: int) -> _Records:
    books = repos.books
    return _Records(
        debits=books.purchases_minor(end_ms),
        day_purchases=books.purchases_minor(end_ms, start_ms=start_ms),
        claimed=books.claimed_minor(end_ms),
        day_claimed=books.claimed_minor(end_ms, start_ms=start_ms),
        vendor_refunds=books.vendor_refunds_minor(end_ms),
        netted_credits=books.netted_credits_minor(end_ms),
        expiry_refunds=books.expiry_refunds_minor(end_ms),
        recovered=books.loss_recovered_minor(end_ms),
        outstanding=books.balances(AccountKind.BROKER_FLOAT, end_ms),
        losses={c: -v for c, v in books.balances(AccountKind.BROKER_LOSS, end_ms).items()},
        vendor_paid=books.balances(AccountKind.VENDOR_BANK, end_ms),
        vendor_owed=books.balances(AccountKind.VENDOR_PAYABLE, end_ms),
        unbalanced=books.unbalanced_transactions(end_ms),
        disputes=[
            {
                "vendor_id": d.vendor_id,
                "ecoin_id": d.ecoin_id,
                "epoch": d.epoch,
                "from_index": d.from_index,
                "to_index": d.to_index,
                "overlaps_claims": d.overlaps,
                "detail": d.detail,
                "at_ms": d.created_at_ms,
            }
            for d in books.disputes(end_ms, _MAX_DISPUTES)
        ],
    )


def reconcile(
    uow: UnitOfWorkFactory, day: str, *, csv_out: io.TextIOBase | None = None
) -> Reconciliation:
    """The books as of the end of ``day`` (UTC); ``csv_out`` gets that day's ledger entries.

    ``uow`` is the broker's store (:class:`broker.storage.BrokerStore`).
    """
    start_ms, end_ms = day_bounds_ms(day)
    with uow(read_only=True) as repos:
        records = _records(repos, start_ms, end_ms)
        if csv_out is not None:
            writer = csv.writer(csv_out)
            writer.writerow(_CSV_HEADER)
            for row in repos.books.ledger_rows(start_ms, end_ms):
                writer.writerow(list(row))
    return _report(day, records)


def _report(day: str, r: _Records) -> Reconciliation:
    # What flagged readers paid back is a reader debit too (it covers broker losses).
    debits = dict(r.debits)
    for currency, amount in r.recovered.items():
        debits[currency] = debits.get(currency, 0) + amount
    currencies = sorted(set(debits) | set(r.outstanding) | set(r.claimed) | set(r.losses))
    redeemed = {c: r.claimed.get(c, 0) - r.vendor_refunds.get(c, 0) for c in currencies}
    refunded = {
        c: r.netted_credits.get(c, 0) + r.vendor_refunds.get(c, 0) + r.expiry_refunds.get(c, 0)
        for c in currencies
    }
    conservation = {
        c: debits.get(c, 0)
        - (r.outstanding.get(c, 0) + redeemed[c] + refunded[c] - r.losses.get(c, 0))
        for c in currencies
    }
    # Every redeemed claim (dispute payouts from broker losses included) is paid or owed.
    mismatch = {
        c: r.vendor_paid.get(c, 0) + r.vendor_owed.get(c, 0) - redeemed[c] for c in currencies
    }
    return Reconciliation(
        day=day,
        conservation_cents=conservation,
        reader_debits_cents={c: debits.get(c, 0) for c in currencies},
        outstanding_cents={c: r.outstanding.get(c, 0) for c in currencies},
        redeemed_cents=redeemed,
        refunded_cents=refunded,
        broker_losses_cents={c: r.losses.get(c, 0) for c in currencies},
        vendor_paid_cents={c: r.vendor_paid.get(c, 0) for c in currencies},
        vendor_owed_cents={c: r.vendor_owed.get(c, 0) for c in currencies},
        payout_mismatch_cents=mismatch,
        unbalanced_transactions=r.unbalanced,
        disputes=r.disputes,
        day_purchases_cents={c: r.day_purchases.get(c, 0) for c in currencies},
        day_redeemed_cents={c: r.day_claimed.get(c, 0) for c in currencies},
    )
