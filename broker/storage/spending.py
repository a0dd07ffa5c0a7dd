"""Reader spending limits and the day's counter (a compare-and-set)."""

from __future__ import annotations

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.orm import Session

from broker.storage.cas import rowcount
from broker.storage.tables import (
    ReaderSpendingRow,
    SpendingLimitRow,
)
from netpay.spending import SpendingLimits

__all__ = ["SpendingRepo"]


class SpendingRepo:
    """Reader spending limits and the day's counter (a compare-and-set)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def limits(self, reader_id: str) -> list[SpendingLimits]:
        rows = self._s.scalars(
            select(SpendingLimitRow)
            .where(SpendingLimitRow.reader_id == reader_id)
            .order_by(SpendingLimitRow.currency)
        )
        return [SpendingLimits(r.currency, r.max_click_minor, r.max_day_minor) for r in rows]

    def limits_in(self, reader_id: str, currency: str) -> SpendingLimits | None:
        for found in self.limits(reader_id):
            if found.currency == currency:
                return found
        return None

    def set_limits(self, reader_id: str, limits: SpendingLimits, now_ms: int) -> None:
        row = self._s.scalars(
            select(SpendingLimitRow).where(
                SpendingLimitRow.reader_id == reader_id,
                SpendingLimitRow.currency == limits.currency,
            )
        ).first()
        if row is None:
            self._s.add(
                SpendingLimitRow(
                    reader_id=reader_id,
                    currency=limits.currency,
                    max_click_minor=limits.max_click_minor,
                    max_day_minor=limits.max_day_minor,
                    updated_at_ms=now_ms,
                )
            )
        else:
            row.max_click_minor = limits.max_click_minor
            row.max_day_minor = limits.max_day_minor
            row.updated_at_ms = now_ms
        self._s.flush()

    def spent(self, reader_id: str, day: int, currency: str) -> int:
        found = self._s.scalar(
            select(ReaderSpendingRow.spent_minor).where(
                ReaderSpendingRow.reader_id == reader_id,
                ReaderSpendingRow.day == day,
                ReaderSpendingRow.currency == currency,
            )
        )
        return int(found or 0)

    def charge(
        self, reader_id: str, day: int, currency: str, amount_minor: int, day_cap: int | None
    ) -> bool:
        """Add ``amount_minor`` to the day unless that passes ``day_cap`` (one
        ``UPDATE ... WHERE spent + amount <= cap``: concurrent draws never both pass)."""
        if (
            self._s.scalars(
                select(ReaderSpendingRow.id).where(
                    ReaderSpendingRow.reader_id == reader_id,
                    ReaderSpendingRow.day == day,
                    ReaderSpendingRow.currency == currency,
                )
            ).first()
            is None
        ):
            self._s.add(
                ReaderSpendingRow(reader_id=reader_id, day=day, currency=currency, spent_minor=0)
            )
            self._s.flush()
        stmt = update(ReaderSpendingRow).where(
            ReaderSpendingRow.reader_id == reader_id,
            ReaderSpendingRow.day == day,
            ReaderSpendingRow.currency == currency,
        )
        if day_cap is not None:
            stmt = stmt.where(ReaderSpendingRow.spent_minor + amount_minor <= day_cap)
        result = self._s.execute(
            stmt.values(spent_minor=ReaderSpendingRow.spent_minor + amount_minor).execution_options(
                synchronize_session=False
            )
        )
        return rowcount(result) == 1
