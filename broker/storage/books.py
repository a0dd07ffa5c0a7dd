"""The books as the reconciliation reads them: sums per currency up to a day's end.

Read-only queries over purchases, claims, refunds, window credits and the
ledger (``netpay broker reconcile``, :mod:`broker.services.reconcile`); each
term comes from its own record, so a bug in any one of them shows.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.domain import AccountKind
from broker.storage.tables import (
    AccountRow,
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

__all__ = ["BooksRepo"]


def _sums(rows: Any) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for currency, amount in rows:
        totals[str(currency)] += int(amount or 0)
    return dict(totals)


class BooksRepo:
    """Per-currency sums of the records the books are made of, as of ``end_ms``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _sum_by_currency(
        self,
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
        return _sums(self._s.execute(stmt.group_by(currency)).all())

    def purchases_minor(self, end_ms: int, *, start_ms: int | None = None) -> dict[str, int]:
        """What readers paid for coins."""
        return self._sum_by_currency(
            PurchaseRow.currency,
            PurchaseRow.amount_minor,
            PurchaseRow.created_at_ms,
            end_ms,
            start_ms=start_ms,
        )

    def claimed_minor(self, end_ms: int, *, start_ms: int | None = None) -> dict[str, int]:
        """What accepted claims paid vendors."""
        return self._sum_by_currency(
            ClaimRow.currency,
            ClaimRow.amount_minor,
            ClaimRow.created_at_ms,
            end_ms,
            start_ms=start_ms,
        )

    def vendor_refunds_minor(self, end_ms: int) -> dict[str, int]:
        return self._sum_by_currency(
            VendorRefundRow.currency,
            VendorRefundRow.amount_minor,
            VendorRefundRow.created_at_ms,
            end_ms,
        )

    def netted_credits_minor(self, end_ms: int) -> dict[str, int]:
        """Window credits netted by a claim, valued at their coin's unit value."""
        return self._sum_by_currency(
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

    def expiry_refunds_minor(self, end_ms: int) -> dict[str, int]:
        return self._sum_by_currency(
            ExpiryRefundRow.currency,
            ExpiryRefundRow.amount_minor,
            ExpiryRefundRow.created_at_ms,
            end_ms,
        )

    def loss_recovered_minor(self, end_ms: int) -> dict[str, int]:
        """What flagged readers paid back into the broker-loss account."""
        return _sums(
            self._s.execute(
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

    def balances(self, kind: AccountKind, end_ms: int) -> dict[str, int]:
        """The summed balance of every account of ``kind``, per currency."""
        return _sums(
            self._s.execute(
                select(AccountRow.currency, func.sum(EntryRow.amount_minor))
                .join(EntryRow, EntryRow.account_id == AccountRow.account_id)
                .join(TransactionRow, TransactionRow.transaction_id == EntryRow.transaction_id)
                .where(AccountRow.kind == kind.value, TransactionRow.at_ms < end_ms)
                .group_by(AccountRow.currency)
            ).all()
        )

    def unbalanced_transactions(self, end_ms: int) -> list[int]:
        """Transactions whose entries do not sum to 0 in some currency (should be none)."""
        return [
            int(t)
            for (t,) in self._s.execute(
                select(EntryRow.transaction_id)
                .join(TransactionRow, TransactionRow.transaction_id == EntryRow.transaction_id)
                .where(TransactionRow.at_ms < end_ms)
                .group_by(EntryRow.transaction_id, EntryRow.currency)
                .having(func.sum(EntryRow.amount_minor) != 0)
            ).all()
        ]

    def disputes(self, end_ms: int, limit: int) -> list[DisputeRow]:
        return list(
            self._s.scalars(
                select(DisputeRow)
                .where(DisputeRow.created_at_ms < end_ms)
                .order_by(DisputeRow.id)
                .limit(limit)
            )
        )

    def ledger_rows(self, start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
        """One row per ledger entry of ``[start_ms, end_ms)``: transaction id, time,
        kind, idempotency key, account kind, owner, currency, amount."""
        rows = self._s.execute(
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
        return [tuple(row) for row in rows]
