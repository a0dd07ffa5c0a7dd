"""The coins aggregate: a coin row (state, index, accepted index) and its pebbles.

The pebbles are every ``PEBBLE_EVERY``-th word of the chain (``w[0]`` is the
root, ``w[n]`` the seed), so any word costs at most ``PEBBLE_EVERY - 1``
hashes. Every change of a coin's state goes through
:func:`ewallet_client.domain.transition`; the index only moves up, with a
compare-and-set (:meth:`CoinRepo.move_index`, :meth:`CoinRepo.move_up`).
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from ewallet_client.domain import CoinEvent, CoinState, CoinView, transition, usable
from ewallet_client.store.records import NewCoin, PendingCoin
from ewallet_client.store.tables import CoinRow, PebbleRow, rowcount
from netpay.chain import hash_down
from netpay.errors import Conflict, NotFound

__all__ = ["PEBBLE_EVERY", "CoinRepo"]

PEBBLE_EVERY = 64


def _view(row: CoinRow) -> CoinView:
    return CoinView(
        ecoin_id=row.ecoin_id,
        state=CoinState(row.state),
        n=row.n,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        index=row.index,
        accepted_index=row.accepted_index,
        expires_at_ms=row.expires_at_ms,
        last_vendor=row.last_vendor,
        created_at_ms=row.created_at_ms,
    )


def _pending(r: CoinRow) -> PendingCoin:
    return PendingCoin(r.ecoin_id, r.request_id, r.n, r.unit_value_minor, r.currency, r.root)


class CoinRepo:
    """The wallet's coins and their pebbles."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _row(self, ecoin_id: str) -> CoinRow:
        row = self._s.get(CoinRow, ecoin_id)
        if row is None:
            raise NotFound(f"no coin {ecoin_id} in the wallet")
        return row

    def insert_pending(self, coin: NewCoin, now_ms: int) -> PendingCoin:
        """Insert a pending coin and its pebbles (``w[0]`` is the root, ``w[n]`` the seed)."""
        root = coin.pebbles[0]
        assert coin.pebbles[coin.n] == coin.seed
        self._s.add(
            CoinRow(
                ecoin_id=coin.ecoin_id,
                state=CoinState.PENDING.value,
                request_id=coin.request_id,
                seed=coin.seed,
                root=root,
                n=coin.n,
                unit_value_minor=coin.unit_value_minor,
                currency=coin.currency,
                created_at_ms=now_ms,
                index=0,
                accepted_index=0,
            )
        )
        self._s.flush()
        self._s.execute(
            insert(PebbleRow),
            [
                {"ecoin_id": coin.ecoin_id, "position": i, "word": w}
                for i, w in coin.pebbles.items()
            ],
        )
        return PendingCoin(
            coin.ecoin_id, coin.request_id, coin.n, coin.unit_value_minor, coin.currency, root
        )

    def pending(self) -> list[PendingCoin]:
        """The coins whose BuyCoin is not confirmed yet, oldest first."""
        rows = self._s.scalars(
            select(CoinRow)
            .where(CoinRow.state == CoinState.PENDING.value)
            .order_by(CoinRow.created_at_ms, CoinRow.ecoin_id)
        ).all()
        return [_pending(r) for r in rows]

    def pending_by_request(self, request_id: str | None) -> PendingCoin | None:
        if request_id is None:
            return None
        r = self._s.scalar(
            select(CoinRow).where(
                CoinRow.request_id == request_id, CoinRow.state == CoinState.PENDING.value
            )
        )
        return None if r is None else _pending(r)

    def change_state(
        self,
        ecoin_id: str,
        event: CoinEvent,
        *,
        touchstone: bytes | None = None,
        expires_at_ms: int | None = None,
    ) -> CoinView:
        """Apply ``event`` to a coin (compare-and-set on its current state)."""
        row = self._row(ecoin_id)
        current = CoinState(row.state)
        new = transition(current, event)
        values: dict[str, object] = {"state": new.value}
        if event is CoinEvent.SOLD:
            assert touchstone is not None and expires_at_ms is not None
            values.update(touchstone=touchstone, expires_at_ms=expires_at_ms)
        result = self._s.execute(
            update(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id, CoinRow.state == current.value)
            .values(**values)
        )
        if rowcount(result) != 1:
            raise Conflict(f"coin {ecoin_id} changed state meanwhile")
        if new is CoinState.ABANDONED:  # nothing was sold: the chain is worthless
            self._s.execute(delete(PebbleRow).where(PebbleRow.ecoin_id == ecoin_id))
        self._s.flush()
        self._s.refresh(row)
        return _view(row)

    def get(self, ecoin_id: str) -> CoinView:
        return _view(self._row(ecoin_id))

    def all(self) -> list[CoinView]:
        rows = self._s.scalars(select(CoinRow).order_by(CoinRow.created_at_ms, CoinRow.ecoin_id))
        return [_view(r) for r in rows]

    def active(self, currency: str) -> list[CoinView]:
        rows = self._s.scalars(
            select(CoinRow).where(
                CoinRow.state == CoinState.ACTIVE.value, CoinRow.currency == currency
            )
        ).all()
        return [_view(r) for r in rows]

    def usable_value_minor(self, currency: str, *, now_ms: int, skew_ms: int) -> int:
        """The value left on the active, unexpired client-side coins in ``currency``."""
        return sum(c.value_left_minor for c in self.active(currency) if usable(c, now_ms, skew_ms))

    def word(self, ecoin_id: str, j: int) -> bytes:
        """``w[j]`` of a coin: at most ``PEBBLE_EVERY - 1`` hashes from a pebble."""
        row = self._row(ecoin_id)
        if not 0 <= j <= row.n:
            raise IndexError(j)
        upper = j if j % PEBBLE_EVERY == 0 else min(row.n, (j // PEBBLE_EVERY + 1) * PEBBLE_EVERY)
        pebble = self._s.get(PebbleRow, (ecoin_id, upper))
        if pebble is None:
            raise NotFound(f"coin {ecoin_id} has no pebble at {upper}")
        assert upper - j < PEBBLE_EVERY
        return hash_down(bytes.fromhex(ecoin_id), upper, pebble.word, j)

    def move_index(self, ecoin_id: str, prev: int, index: int) -> bool:
        """``index = new`` where ``index = prev``: False when another writer moved it."""
        result = self._s.execute(
            update(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id, CoinRow.index == prev)
            .values(index=index)
        )
        return rowcount(result) == 1

    def move_up(self, ecoin_id: str, index: int) -> bool:
        """Raise the coin's index to ``index`` (never down); True if it moved."""
        row = self._row(ecoin_id)
        assert 0 <= index <= row.n
        result = self._s.execute(
            update(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id, CoinRow.index < index)
            .values(index=index)
        )
        return rowcount(result) == 1

    def accepted(self, ecoin_id: str, to_index: int, vendor_id: str) -> None:
        """A vendor accepted the coin up to ``to_index``: ``accepted_index`` and last vendor."""
        self._s.execute(
            update(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id, CoinRow.accepted_index < to_index)
            .values(accepted_index=to_index)
        )
        self._s.execute(
            update(CoinRow).where(CoinRow.ecoin_id == ecoin_id).values(last_vendor=vendor_id)
        )
