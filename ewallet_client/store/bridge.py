"""The bridge aggregate: the origins approved for the browser bridge and their spending.

An approved origin has its own caps (NULL: the bridge's own); what the
bridge authorised for it is counted per UTC day and currency, raised with a
compare-and-set (:meth:`BridgeRepo.add_spending`) in the transaction that
moves the coin's index.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ewallet_client.store.records import ApprovedOrigin
from ewallet_client.store.tables import (
    MAX_ORIGIN_CHARS,
    BridgeOriginRow,
    BridgeSpendingRow,
    rowcount,
)
from netpay.errors import InvalidArgument

__all__ = ["MAX_APPROVED_ORIGINS", "BridgeRepo"]

MAX_APPROVED_ORIGINS = 1000


def _approved(row: BridgeOriginRow) -> ApprovedOrigin:
    return ApprovedOrigin(row.origin, row.max_click_minor, row.max_day_minor, row.approved_at_ms)


class BridgeRepo:
    """Approved origins and the bridge's spending per origin and day."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def approve(
        self, origin: str, *, max_click_minor: int | None, max_day_minor: int | None, now_ms: int
    ) -> ApprovedOrigin:
        """Approve (or re-approve with new caps) a normalised web origin."""
        assert len(origin) <= MAX_ORIGIN_CHARS
        row = self._s.get(BridgeOriginRow, origin)
        if row is None:
            count = self._s.scalar(select(func.count()).select_from(BridgeOriginRow)) or 0
            if count >= MAX_APPROVED_ORIGINS:
                raise InvalidArgument(
                    f"at most {MAX_APPROVED_ORIGINS} approved origins: revoke some first"
                )
            row = BridgeOriginRow(origin=origin)
            self._s.add(row)
        row.max_click_minor = max_click_minor
        row.max_day_minor = max_day_minor
        row.approved_at_ms = now_ms
        self._s.flush()
        return _approved(row)

    def revoke(self, origin: str) -> bool:
        """Forget an approved origin (its spending history stays); True if it was there."""
        gone = rowcount(
            self._s.execute(delete(BridgeOriginRow).where(BridgeOriginRow.origin == origin))
        )
        return gone == 1

    def approved(self, origin: str) -> ApprovedOrigin | None:
        if len(origin) > MAX_ORIGIN_CHARS:
            return None
        row = self._s.get(BridgeOriginRow, origin)
        return None if row is None else _approved(row)

    def all(self) -> list[ApprovedOrigin]:
        rows = self._s.scalars(select(BridgeOriginRow).order_by(BridgeOriginRow.origin)).all()
        return [_approved(r) for r in rows]

    def spending(self, origin: str, day: int) -> dict[str, tuple[int, int]]:
        """{currency: (spent minor units, clicks)} for ``origin`` on ``day``."""
        rows = self._s.scalars(
            select(BridgeSpendingRow).where(
                BridgeSpendingRow.origin == origin, BridgeSpendingRow.day == day
            )
        ).all()
        return {r.currency: (r.spent_minor, r.clicks) for r in rows}

    def spent(self, origin: str, day: int, currency: str) -> int:
        found = self._s.scalar(
            select(BridgeSpendingRow.spent_minor).where(
                BridgeSpendingRow.origin == origin,
                BridgeSpendingRow.day == day,
                BridgeSpendingRow.currency == currency,
            )
        )
        return int(found or 0)

    def add_spending(
        self, origin: str, day: int, currency: str, amount_minor: int, *, day_cap_minor: int
    ) -> bool:
        """Add one click of ``amount_minor`` unless the day's total would pass the cap.

        A compare-and-set (``UPDATE ... WHERE spent + amount <= cap``) on the
        day's row: two concurrent transactions can never both pass under the
        cap, on SQLite (one writer) as on PostgreSQL (the row lock re-checks
        WHERE). False: refused, nothing added.
        """
        key = (origin, day, currency)
        if self._s.get(BridgeSpendingRow, key) is None:
            try:
                with self._s.begin_nested():
                    self._s.add(
                        BridgeSpendingRow(
                            origin=origin, day=day, currency=currency, spent_minor=0, clicks=0
                        )
                    )
            except IntegrityError:  # a concurrent first click of the day (PostgreSQL)
                pass
        moved = rowcount(
            self._s.execute(
                update(BridgeSpendingRow)
                .where(
                    BridgeSpendingRow.origin == origin,
                    BridgeSpendingRow.day == day,
                    BridgeSpendingRow.currency == currency,
                    BridgeSpendingRow.spent_minor + amount_minor <= day_cap_minor,
                )
                .values(
                    spent_minor=BridgeSpendingRow.spent_minor + amount_minor,
                    clicks=BridgeSpendingRow.clicks + 1,
                )
                .execution_options(synchronize_session=False)
            )
        )
        return moved == 1
