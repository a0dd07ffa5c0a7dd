"""The spending aggregate: the reader's limits per currency and the day's spending.

Spending is counted for every payment the wallet makes with its own coins
(limits or not), so a daily limit set at noon counts the morning; the day's
row is raised with a compare-and-set (:meth:`SpendingRepo.add`) in the
transaction that moves the coin's index. The rules are
:func:`netpay.spending.check_spend`'s.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ewallet_client.store.records import KEEP, Keep
from ewallet_client.store.tables import SpendingLimitRow, SpendingRow, rowcount
from netpay.spending import SpendingLimits

__all__ = ["SpendingRepo"]


def _limits(row: SpendingLimitRow) -> SpendingLimits:
    return SpendingLimits(row.currency, row.max_click_minor, row.max_day_minor)


class SpendingRepo:
    """Spending limits and the spending of each UTC day."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def limits(self, currency: str) -> SpendingLimits | None:
        """The reader's limits in ``currency`` (None: no limit set)."""
        row = self._s.get(SpendingLimitRow, currency)
        return None if row is None else _limits(row)

    def all_limits(self) -> list[SpendingLimits]:
        """Every currency with a limit, by currency."""
        rows = self._s.scalars(select(SpendingLimitRow).order_by(SpendingLimitRow.currency)).all()
        return [_limits(r) for r in rows]

    def set_limits(
        self,
        currency: str,
        *,
        now_ms: int,
        max_click_minor: int | Keep | None = KEEP,
        max_day_minor: int | Keep | None = KEEP,
    ) -> SpendingLimits:
        """Change the limits in ``currency``; a limit not passed (``KEEP``) stays.

        ``None`` removes a limit. The values are checked by
        :class:`netpay.spending.SpendingLimits` (``invalid_argument``).
        """
        row = self._s.get(SpendingLimitRow, currency)
        old = SpendingLimits(currency) if row is None else _limits(row)
        new = SpendingLimits(
            currency,
            max_click_minor=old.max_click_minor
            if isinstance(max_click_minor, Keep)
            else max_click_minor,
            max_day_minor=old.max_day_minor if isinstance(max_day_minor, Keep) else max_day_minor,
        )
        if new.unlimited:
            if row is not None:
                self._s.delete(row)
        else:
            if row is None:
                row = SpendingLimitRow(currency=currency)
                self._s.add(row)
            row.max_click_minor = new.max_click_minor
            row.max_day_minor = new.max_day_minor
            row.updated_at_ms = now_ms
        self._s.flush()
        return new

    def day(self, day: int) -> dict[str, tuple[int, int]]:
        """{currency: (spent minor units, payments)} of the wallet's own payments on ``day``."""
        rows = self._s.scalars(select(SpendingRow).where(SpendingRow.day == day)).all()
        return {r.currency: (r.spent_minor, r.payments) for r in rows}

    def open_day(self, day: int, currency: str) -> None:
        """Make sure the day's row exists (at zero)."""
        if self._s.get(SpendingRow, (day, currency)) is not None:
            return
        try:
            with self._s.begin_nested():
                self._s.add(SpendingRow(day=day, currency=currency, spent_minor=0, payments=0))
        except IntegrityError:  # a concurrent first payment of the day (PostgreSQL)
            pass

    def spent(self, day: int, currency: str) -> int:
        found = self._s.scalar(
            select(SpendingRow.spent_minor).where(
                SpendingRow.day == day, SpendingRow.currency == currency
            )
        )
        return int(found or 0)

    def add(self, day: int, currency: str, amount_minor: int, *, day_cap_minor: int | None) -> bool:
        """Count one payment of ``amount_minor`` unless the day would pass ``day_cap_minor``.

        A compare-and-set (``UPDATE ... WHERE spent + amount <= cap``): two
        concurrent payments can never both pass under the daily limit
        (SQLite: one writer; PostgreSQL: the row lock re-checks WHERE).
        False: refused, nothing counted.
        """
        where = [SpendingRow.day == day, SpendingRow.currency == currency]
        if day_cap_minor is not None:
            where.append(SpendingRow.spent_minor + amount_minor <= day_cap_minor)
        moved = rowcount(
            self._s.execute(
                update(SpendingRow)
                .where(*where)
                .values(
                    spent_minor=SpendingRow.spent_minor + amount_minor,
                    payments=SpendingRow.payments + 1,
                )
                .execution_options(synchronize_session=False)
            )
        )
        return moved == 1
