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
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from broker.domain import AccountKind
from broker.storage import (
    AccountRow,
    BrokerStore,
    ClaimRow,
    CoinRow,
    DisputeRow,
    EntryRow,
    ExpiryRefundRow,
    PurchaseRow,
    TransactionRow,
    VendorRefundRow,
    WindowCreditRow,
)
from netpay.errors import InvalidArgument

__all__ = ["Reconciliation", "day_bounds_ms", "reconcile"]

_MAX_DISPUTES = 1000


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


def _sums(rows: Any) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for currency, amount in rows:
        totals[str(currency)] += int(amount or 0)
    return dict(totals)


def _sum_by_currency(
    session: Any,
    currency: Any,
    amount: Any,
    at: Any,
    end_ms: int,
    *,
    start_ms: int | None = None,
    joins: tuple[tuple[Any, Any], ...] = (),
    from_: Any = None,
) -> dict[str, int]:
    """``SUM(amount)`` per currency of the rows timed ``[start_ms, end_ms)``."""
    stmt = select(currency, func.sum(amount))
    if from_ is not None:
        stmt = stmt.select_from(from_)
    for target, onclause in joins:
        stmt = stmt.join(target, onclause)
    stmt = stmt.where(at < end_ms)
    if start_ms is not None:
        stmt = stmt.where(at >= start_ms)
    return _sums(session.execute(stmt.group_by(currency)).all())


def _balances(session: Any, kind: AccountKind, end_ms: int) -> dict[str, int]:
    return _sums(
        session.execute(
            select(AccountRow.currency, func.sum(EntryRow.amount_minor))
            .join(EntryRow, EntryRow.account_id == AccountRow.account_id)
            .join(TransactionRow, TransactionRow.transaction_id == EntryRow.transaction_id)
            .where(AccountRow.kind == kind.value, TransactionRow.at_ms < end_ms)
            .group_by(AccountRow.currency)
        ).all()
    )


def reconcile(
    store: BrokerStore, day: str, *, csv_out: io.TextIOBase | None = None
) -> Reconciliation:
    """The books as of the end of ``day`` (UTC); ``csv_out`` gets that day's ledger entries."""
    start_ms, end_ms = day_bounds_ms(day)
    with store.begin(read_only=True) as repos:
        s = repos.session
        debits = _sum_by_currency(
            s, PurchaseRow.currency, PurchaseRow.amount_minor, PurchaseRow.created_at_ms, end_ms
        )
        day_purchases = _sum_by_currency(
            s,
            PurchaseRow.currency,
            PurchaseRow.amount_minor,
            PurchaseRow.created_at_ms,
            end_ms,
            start_ms=start_ms,
        )
        claimed = _sum_by_currency(
            s, ClaimRow.currency, ClaimRow.amount_minor, ClaimRow.created_at_ms, end_ms
        )
        day_claimed = _sum_by_currency(
            s,
            ClaimRow.currency,
            ClaimRow.amount_minor,
            ClaimRow.created_at_ms,
            end_ms,
            start_ms=start_ms,
        )
        vendor_refunds = _sum_by_currency(
            s,
            VendorRefundRow.currency,
            VendorRefundRow.amount_minor,
            VendorRefundRow.created_at_ms,
            end_ms,
        )
        netted_credits = _sum_by_currency(
            s,
            CoinRow.currency,
            WindowCreditRow.refund_units * CoinRow.unit_value_minor,
            ClaimRow.created_at_ms,
            end_ms,
            joins=(
                (CoinRow, CoinRow.ecoin_id == WindowCreditRow.ecoin_id),
                (ClaimRow, ClaimRow.id == WindowCreditRow.claim_id),
            ),
            from_=WindowCreditRow,
        )
        expiry_refunds = _sum_by_currency(
            s,
            ExpiryRefundRow.currency,
            ExpiryRefundRow.amount_minor,
            ExpiryRefundRow.created_at_ms,
            end_ms,
        )
        recovered = _sums(
            s.execute(
                select(AccountRow.currency, func.sum(EntryRow.amount_minor))
                .join(EntryRow, EntryRow.account_id == AccountRow.account_id)
                .join(TransactionRow, TransactionRow.transaction_id == EntryRow.transaction_id)
                .where(
                    TransactionRow.kind == "loss_recovery",
                    AccountRow.kind == AccountKind.BROKER_LOSS.value,
                    TransactionRow.at_ms < end_ms,
                )
                .group_by(AccountRow.currency)
            ).all()
        )
        outstanding = _balances(s, AccountKind.BROKER_FLOAT, end_ms)
        losses = {c: -v for c, v in _balances(s, AccountKind.BROKER_LOSS, end_ms).items()}
        vendor_paid = _balances(s, AccountKind.VENDOR_BANK, end_ms)
        vendor_owed = _balances(s, AccountKind.VENDOR_PAYABLE, end_ms)
        unbalanced = [
            int(t)
            for (t,) in s.execute(
                select(EntryRow.transaction_id)
                .join(TransactionRow, TransactionRow.transaction_id == EntryRow.transaction_id)
                .where(TransactionRow.at_ms < end_ms)
                .group_by(EntryRow.transaction_id, EntryRow.currency)
                .having(func.sum(EntryRow.amount_minor) != 0)
            ).all()
        ]
        disputes = [
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
            for d in s.scalars(
                select(DisputeRow)
                .where(DisputeRow.created_at_ms < end_ms)
                .order_by(DisputeRow.id)
                .limit(_MAX_DISPUTES)
            )
        ]
        if csv_out is not None:
            _write_csv(s, csv_out, start_ms, end_ms)
    # What flagged readers paid back is a reader debit too (it covers broker losses).
    for currency, amount in recovered.items():
        debits[currency] = debits.get(currency, 0) + amount
    currencies = sorted(set(debits) | set(outstanding) | set(claimed) | set(losses))
    redeemed = {c: claimed.get(c, 0) - vendor_refunds.get(c, 0) for c in currencies}
    refunded = {
        c: netted_credits.get(c, 0) + vendor_refunds.get(c, 0) + expiry_refunds.get(c, 0)
        for c in currencies
    }
    conservation = {
        c: debits.get(c, 0) - (outstanding.get(c, 0) + redeemed[c] + refunded[c] - losses.get(c, 0))
        for c in currencies
    }
    # Every redeemed claim (dispute payouts from broker losses included) is paid or owed.
    mismatch = {c: vendor_paid.get(c, 0) + vendor_owed.get(c, 0) - redeemed[c] for c in currencies}
    return Reconciliation(
        day=day,
        conservation_cents=conservation,
        reader_debits_cents={c: debits.get(c, 0) for c in currencies},
        outstanding_cents={c: outstanding.get(c, 0) for c in currencies},
        redeemed_cents=redeemed,
        refunded_cents=refunded,
        broker_losses_cents={c: losses.get(c, 0) for c in currencies},
        vendor_paid_cents={c: vendor_paid.get(c, 0) for c in currencies},
        vendor_owed_cents={c: vendor_owed.get(c, 0) for c in currencies},
        payout_mismatch_cents=mismatch,
        unbalanced_transactions=unbalanced,
        disputes=disputes,
        day_purchases_cents={c: day_purchases.get(c, 0) for c in currencies},
        day_redeemed_cents={c: day_claimed.get(c, 0) for c in currencies},
    )


def _write_csv(session: Any, out: io.TextIOBase, start_ms: int, end_ms: int) -> None:
    """One row per ledger entry of the day: the export an accountant asks for."""
    writer = csv.writer(out)
    writer.writerow(
        [
            "transaction_id",
            "at_ms",
            "kind",
            "idempotency_key",
            "account_kind",
            "owner",
            "currency",
            "amount_minor",
        ]
    )
    rows = session.execute(
        select(
            TransactionRow.transaction_id,
            TransactionRow.at_ms,
            TransactionRow.kind,
            TransactionRow.idempotency_key,
            AccountRow.kind,
            AccountRow.owner,
            EntryRow.currency,
            EntryRow.amount_minor,
        )
        .join(EntryRow, EntryRow.transaction_id == TransactionRow.transaction_id)
        .join(AccountRow, AccountRow.account_id == EntryRow.account_id)
        .where(TransactionRow.at_ms >= start_ms, TransactionRow.at_ms < end_ms)
        .order_by(TransactionRow.transaction_id, EntryRow.entry_id)
    ).all()
    for row in rows:
        writer.writerow(list(row))
