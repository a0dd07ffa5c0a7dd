"""The operator's reads: the dashboard's counts and lists, and the redemption
history's batches, claims and refunds. Read-only; nothing here changes a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vendor.domain import VendorCoinState, WindowState, WindowView
from vendor.storage.coins import ClickRecord, StoredCoin, click_record, stored_coin
from vendor.storage.redemption import ClaimRecord, claim_record
from vendor.storage.refunds import RefundRecord, refund_record
from vendor.storage.tables import (
    ClaimStateRow,
    ClickRow,
    CoinRow,
    RedemptionBatchRow,
    VendorRefundRow,
    WindowClickRow,
    WindowRow,
)
from vendor.storage.windows import window_view

__all__ = ["BatchLine", "ReportRepo", "Revenue"]


@dataclass(frozen=True)
class Revenue:
    """The clicks of one currency: what the vendor will claim at redemption."""

    currency: str
    amount_minor: int
    clicks: int


@dataclass(frozen=True)
class BatchLine:
    """A stored batch as the history lists it."""

    batch_id: str
    state: str
    created_at_ms: int


class ReportRepo:
    """Read-only queries for the dashboard and the redemption history."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    # -- the operator's dashboard ----------------------------------------------

    def click_count(self) -> int:
        """Paid clicks and window clicks."""
        return sum(
            int(self._session.scalar(select(func.count()).select_from(row)) or 0)
            for row in (ClickRow, WindowClickRow)
        )

    def recent_clicks(self, *, limit: int) -> list[ClickRecord]:
        """The last ``limit`` clicks, newest first."""
        rows = self._session.scalars(select(ClickRow).order_by(ClickRow.id.desc()).limit(limit))
        return [click_record(r) for r in rows]

    def revenue(self) -> list[Revenue]:
        """Sum and count of what readers consumed, per currency: paid clicks and window clicks."""
        totals: dict[str, tuple[int, int]] = {}
        for row in (ClickRow, WindowClickRow):
            for currency, total, count in self._session.execute(
                select(row.currency, func.sum(row.amount_minor), func.count()).group_by(
                    row.currency
                )
            ):
                before_total, before_count = totals.get(currency, (0, 0))
                totals[currency] = (before_total + int(total or 0), before_count + int(count))
        return [Revenue(c, total, count) for c, (total, count) in sorted(totals.items())]

    def coin_counts(self) -> dict[VendorCoinState, int]:
        """How many coin rows are in each state."""
        rows = self._session.execute(select(CoinRow.state, func.count()).group_by(CoinRow.state))
        counts = dict.fromkeys(VendorCoinState, 0)
        for state, count in rows:
            counts[VendorCoinState(state)] = int(count)
        return counts

    def coins_in(self, states: Sequence[VendorCoinState], *, limit: int) -> list[StoredCoin]:
        """Coins in ``states``, most recently changed first."""
        rows = self._session.scalars(
            select(CoinRow)
            .where(CoinRow.state.in_([s.value for s in states]))
            .order_by(CoinRow.updated_at_ms.desc(), CoinRow.ecoin_id)
            .limit(limit)
        )
        return [stored_coin(r) for r in rows]

    def open_windows(self, *, limit: int) -> list[WindowView]:
        """OPEN windows, newest first (the dashboard)."""
        rows = self._session.scalars(
            select(WindowRow)
            .where(WindowRow.state == WindowState.OPEN.value)
            .order_by(WindowRow.id.desc())
            .limit(limit)
        )
        return [window_view(r) for r in rows]

    def open_window_count(self) -> int:
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(WindowRow)
                .where(WindowRow.state == WindowState.OPEN.value)
            )
            or 0
        )

    # -- the redemption history ------------------------------------------------------

    def batches(self, *, limit: int) -> list[BatchLine]:
        """The newest ``limit`` batches, newest first."""
        rows = self._session.execute(
            select(
                RedemptionBatchRow.batch_id,
                RedemptionBatchRow.state,
                RedemptionBatchRow.created_at_ms,
            )
            .order_by(RedemptionBatchRow.created_at_ms.desc(), RedemptionBatchRow.batch_id.desc())
            .limit(limit)
        ).all()
        return [BatchLine(b, s, int(t)) for b, s, t in rows]

    def claims_of(self, batch_ids: Sequence[str]) -> list[ClaimRecord]:
        """The claims of ``batch_ids``, in the order they were stored."""
        if not batch_ids:
            return []
        rows = self._session.scalars(
            select(ClaimStateRow)
            .where(ClaimStateRow.batch_id.in_(list(batch_ids)))
            .order_by(ClaimStateRow.id)
        ).all()
        return [claim_record(r) for r in rows]

    def refunds_recorded(self, *, limit: int) -> list[RefundRecord]:
        """The ``limit`` refunds recorded last, newest first."""
        rows = self._session.scalars(
            select(VendorRefundRow)
            .order_by(VendorRefundRow.created_at_ms.desc(), VendorRefundRow.id.desc())
            .limit(limit)
        ).all()
        return [refund_record(r) for r in rows]

    def refunds_per_batch(self, batch_ids: Sequence[str]) -> dict[str, int]:
        if not batch_ids:
            return {}
        rows = self._session.execute(
            select(VendorRefundRow.batch_id, func.count())
            .where(VendorRefundRow.batch_id.in_(list(batch_ids)))
            .group_by(VendorRefundRow.batch_id)
        ).all()
        return {str(b): int(n) for b, n in rows}
