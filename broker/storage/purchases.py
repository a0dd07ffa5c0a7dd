"""Purchases: BuyCoin's first result per (reader, request id)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from broker.storage.tables import (
    PurchaseRow,
)

__all__ = ["PurchaseRepo"]


class PurchaseRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, reader_id: str, request_id: str) -> PurchaseRow | None:
        return self._s.scalars(
            select(PurchaseRow).where(
                PurchaseRow.reader_id == reader_id, PurchaseRow.request_id == request_id
            )
        ).first()

    def of_coins(self, ecoin_ids: Sequence[str]) -> list[PurchaseRow]:
        if not ecoin_ids:
            return []
        return list(
            self._s.scalars(select(PurchaseRow).where(PurchaseRow.ecoin_id.in_(list(ecoin_ids))))
        )

    def add(self, row: PurchaseRow) -> None:
        self._s.add(row)
        self._s.flush()
