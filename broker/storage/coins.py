"""Coins and their custody log (epochs); every custody change is a compare-and-set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.orm import Session

from broker.domain import (
    CoinRecordView,
    CoinState,
    EpochOpening,
    EpochView,
    IndexedWord,
)
from broker.storage.cas import rowcount
from broker.storage.tables import (
    CoinRow,
    CustodyEpochRow,
)

__all__ = ["CoinRepo", "StoredCoin"]


@dataclass(frozen=True)
class StoredCoin:
    view: CoinRecordView
    owner: str
    currency: str
    wallet_kind: str
    touchstone: bytes


def _coin_view(row: CoinRow) -> CoinRecordView:
    return CoinRecordView(
        ecoin_id=row.ecoin_id,
        n=row.n,
        unit_value_minor=row.unit_value_minor,
        expires_at_ms=row.expires_at_ms,
        state=CoinState(row.state),
        frozen=row.frozen,
        holder=row.holder,
        epoch=row.epoch,
        latest=IndexedWord(row.latest_index, row.latest_word),
        lease_expires_ms=row.lease_expires_ms,
        grant_epoch=row.grant_epoch,
        grant_to_vendor=row.grant_to_vendor,
        grant_expires_ms=row.grant_expires_ms,
    )


def _stored(row: CoinRow) -> StoredCoin:
    return StoredCoin(_coin_view(row), row.owner, row.currency, row.wallet_kind, row.touchstone)


def _epoch_view(row: CustodyEpochRow) -> EpochView:
    end = None
    forced_end = None
    if row.end_index is not None and row.end_word is not None:
        end = IndexedWord(row.end_index, row.end_word)
    elif row.end_index is not None:
        forced_end = row.end_index  # force-closed: the broker never saw that word
    return EpochView(
        epoch=row.epoch,
        holder=row.holder,
        base=IndexedWord(row.base_index, row.base_word),
        opened_by=EpochOpening(row.opened_by),
        opened_from=row.opened_from,
        end=end,
        forced_end=forced_end,
    )


class CoinRepo:
    def __init__(self, session: Session) -> None:
        self._s = session

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
        self._s.add(
            CoinRow(
                ecoin_id=coin.ecoin_id,
                owner=owner,
                n=coin.n,
                unit_value_minor=coin.unit_value_minor,
                currency=currency,
                wallet_kind=wallet_kind,
                root=root,
                touchstone=touchstone,
                issued_at_ms=issued_at_ms,
                expires_at_ms=coin.expires_at_ms,
                state=coin.state.value,
                frozen=coin.frozen,
                holder=None,
                epoch=0,
                latest_index=0,
                latest_word=coin.latest.word,
            )
        )
        self._s.flush()

    def get(self, ecoin_id: str, *, for_update: bool = False) -> StoredCoin | None:
        stmt = (
            select(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id)
            .execution_options(populate_existing=True)
        )
        if for_update:
            stmt = stmt.with_for_update()
        row = self._s.scalars(stmt).first()
        return None if row is None else _stored(row)

    def exists(self, ecoin_id: str) -> bool:
        found = self._s.scalars(
            select(CoinRow.ecoin_id).where(CoinRow.ecoin_id == ecoin_id)
        ).first()
        return found is not None

    def list_for_owner(self, owner: str, limit: int) -> list[StoredCoin]:
        rows = self._s.scalars(
            select(CoinRow)
            .where(CoinRow.owner == owner)
            .order_by(CoinRow.issued_at_ms.desc(), CoinRow.ecoin_id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        return [_stored(row) for row in rows]

    def apply(self, before: CoinRecordView, after: CoinRecordView) -> bool:
        """Compare-and-set the custody columns; False when the row moved meanwhile."""
        assert before.ecoin_id == after.ecoin_id
        result = self._s.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == before.ecoin_id,
                CoinRow.epoch == before.epoch,
                CoinRow.state == before.state.value,
                CoinRow.latest_index == before.latest.index,
            )
            .values(
                state=after.state.value,
                frozen=after.frozen,
                holder=after.holder,
                epoch=after.epoch,
                latest_index=after.latest.index,
                latest_word=after.latest.word,
                lease_expires_ms=after.lease_expires_ms,
                grant_epoch=after.grant_epoch,
                grant_to_vendor=after.grant_to_vendor,
                grant_expires_ms=after.grant_expires_ms,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def epoch(self, ecoin_id: str, epoch: int) -> EpochView | None:
        row = self._s.scalars(
            select(CustodyEpochRow)
            .where(CustodyEpochRow.ecoin_id == ecoin_id, CustodyEpochRow.epoch == epoch)
            .execution_options(populate_existing=True)
        ).first()
        return None if row is None else _epoch_view(row)

    def epochs(self, ecoin_id: str) -> list[EpochView]:
        rows = self._s.scalars(
            select(CustodyEpochRow)
            .where(CustodyEpochRow.ecoin_id == ecoin_id)
            .order_by(CustodyEpochRow.epoch)
            .execution_options(populate_existing=True)
        )
        return [_epoch_view(row) for row in rows]

    def epochs_of(self, ecoin_ids: Sequence[str]) -> dict[str, list[EpochView]]:
        """The custody log of each coin in ``ecoin_ids``, oldest epoch first."""
        found: dict[str, list[EpochView]] = {ecoin_id: [] for ecoin_id in ecoin_ids}
        if not found:
            return found
        rows = self._s.scalars(
            select(CustodyEpochRow)
            .where(CustodyEpochRow.ecoin_id.in_(list(found)))
            .order_by(CustodyEpochRow.ecoin_id, CustodyEpochRow.epoch)
            .execution_options(populate_existing=True)
        )
        for row in rows:
            found[row.ecoin_id].append(_epoch_view(row))
        return found

    def open_epoch(self, ecoin_id: str, epoch: EpochView, now_ms: int) -> None:
        assert epoch.end is None
        self._s.add(
            CustodyEpochRow(
                ecoin_id=ecoin_id,
                epoch=epoch.epoch,
                holder=epoch.holder,
                base_index=epoch.base.index,
                base_word=epoch.base.word,
                opened_at_ms=now_ms,
                opened_by=epoch.opened_by.value,
                opened_from=epoch.opened_from,
            )
        )
        self._s.flush()

    def close_epoch(
        self,
        ecoin_id: str,
        epoch: int,
        end: IndexedWord | int,
        now_ms: int,
        reason: EpochOpening,
    ) -> bool:
        """Close an open epoch at ``end`` (compare-and-set on its still being open;
        False when it is not); a bare index for a force-closed epoch, whose end word
        nobody showed."""
        index, word = (end, None) if isinstance(end, int) else (end.index, end.word)
        result = self._s.execute(
            update(CustodyEpochRow)
            .where(
                CustodyEpochRow.ecoin_id == ecoin_id,
                CustodyEpochRow.epoch == epoch,
                CustodyEpochRow.end_index.is_(None),
            )
            .values(
                end_index=index,
                end_word=word,
                closed_at_ms=now_ms,
                close_reason=reason.value,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1
