"""Coins and the click log: the custody compare-and-sets and the paid click.

:class:`CoinRepo` holds every write to ``vendor_coins`` (a new epoch, the
payment's compare-and-set, the start of a hand-off, a reclaim, the end of an
epoch, leases), the click log ``vendor_clicks`` and what the broker said is
on its way back to a coin's reader (``vendor_coin_refunds``). Every state
change is a compare-and-set (``UPDATE ... WHERE`` + rowcount) whose new state
comes from :func:`vendor.domain.transition`.

The paid-click path (:meth:`CoinRepo.pay_lookup`, ``cas_pay``, ``add_click``,
``get``) runs SQLAlchemy Core statements built once at import, with
``bindparam`` placeholders, on the session's connection: their compiled form
is cached and they skip the ORM's identity map and unit-of-work, which were
most of a paid click's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    String,
    Table,
    and_,
    bindparam,
    case,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendor.domain import CoinEvent, CoinView, VendorCoinState, transition
from vendor.storage.tables import Base, ClickRow, CoinRefundRow, CoinRow, rowcount

__all__ = ["ClickRecord", "CoinRepo", "EpochGrant", "StoredCoin", "click_record", "stored_coin"]


@dataclass(frozen=True)
class StoredCoin:
    """A coin row as the services see it."""

    view: CoinView
    base_index: int
    base_word: bytes
    touchstone: bytes
    handoff_to: str | None
    handoff_coin_index: bytes | None
    handoff_started_ms: int | None


@dataclass(frozen=True)
class ClickRecord:
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    payword: bytes
    item_id: str
    amount_minor: int
    currency: str
    receipt: bytes
    created_at_ms: int


def stored_coin(row: CoinRow | Row[Any]) -> StoredCoin:
    """A StoredCoin from an ORM row or a Core row of ``vendor_coins`` (same names)."""
    view = CoinView(
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        state=VendorCoinState(row.state),
        index=row.idx,
        payword=row.payword,
        n=row.n,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        expires_at_ms=row.expires_at_ms,
        lease_deadline_ms=row.lease_deadline_ms,
        acknowledged_index=row.acknowledged_index,
        max_accepted_index=row.max_accepted_index,
    )
    return StoredCoin(
        view=view,
        base_index=row.base_index,
        base_word=row.base_word,
        touchstone=row.touchstone,
        handoff_to=row.handoff_to,
        handoff_coin_index=row.handoff_coin_index,
        handoff_started_ms=row.handoff_started_ms,
    )


def click_record(row: ClickRow) -> ClickRecord:
    return ClickRecord(
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        from_index=row.from_index,
        to_index=row.to_index,
        payword=row.payword,
        item_id=row.item_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        receipt=row.receipt,
        created_at_ms=row.created_at_ms,
    )


# -- the paid-click statements (Core, compiled once) -----------------------------

_COINS: Table = Base.metadata.tables[CoinRow.__tablename__]
_CLICKS: Table = Base.metadata.tables[ClickRow.__tablename__]

# The coin and, in the same round trip, the click that already took ``to_index``
# (unique on (ecoin_id, to_index)): a retry's lookup and the coin for one read.
_LOOKUP_COLUMNS = [*_COINS.c, *(col.label(f"click_{col.name}") for col in _CLICKS.c)]
_SELECT_COIN_AND_CLICK = (
    select(*_LOOKUP_COLUMNS)
    .select_from(
        _COINS.outerjoin(
            _CLICKS,
            and_(
                _CLICKS.c.ecoin_id == _COINS.c.ecoin_id,
                _CLICKS.c.to_index == bindparam("p_to_index", type_=Integer),
            ),
        )
    )
    .where(_COINS.c.ecoin_id == bindparam("p_ecoin_id", type_=String))
)
_SELECT_COIN = select(*_COINS.c).where(_COINS.c.ecoin_id == bindparam("p_ecoin_id", type_=String))
# The payment compare-and-set: HELD in this epoch, at from_index, lease live.
_CAS_PAY = (
    update(_COINS)
    .where(
        _COINS.c.ecoin_id == bindparam("p_ecoin_id", type_=String),
        _COINS.c.epoch == bindparam("p_epoch", type_=BigInteger),
        _COINS.c.idx == bindparam("p_from_index", type_=Integer),
        _COINS.c.state == bindparam("p_held", type_=String),
        _COINS.c.lease_deadline_ms > bindparam("p_now_ms", type_=BigInteger),
    )
    .values(
        state=bindparam("p_new_state", type_=String),
        idx=bindparam("p_to_index", type_=Integer),
        payword=bindparam("p_payword", type_=LargeBinary),
        max_accepted_index=case(
            (
                _COINS.c.max_accepted_index < bindparam("p_to_index", type_=Integer),
                bindparam("p_to_index", type_=Integer),
            ),
            else_=_COINS.c.max_accepted_index,
        ),
        updated_at_ms=bindparam("p_now_ms", type_=BigInteger),
    )
)
# inline(): the click's id is never needed back (no RETURNING, no lastrowid).
_INSERT_CLICK = (
    insert(_CLICKS)
    .inline()
    .values(
        ecoin_id=bindparam("p_ecoin_id", type_=String),
        epoch=bindparam("p_epoch", type_=BigInteger),
        from_index=bindparam("p_from_index", type_=Integer),
        to_index=bindparam("p_to_index", type_=Integer),
        payword=bindparam("p_payword", type_=LargeBinary),
        item_id=bindparam("p_item_id", type_=String),
        amount_minor=bindparam("p_amount_minor", type_=BigInteger),
        currency=bindparam("p_currency", type_=String),
        receipt=bindparam("p_receipt", type_=LargeBinary),
        created_at_ms=bindparam("p_created_at_ms", type_=BigInteger),
    )
)


def _lookup_click(row: Row[Any]) -> ClickRecord | None:
    """The click half of a ``_SELECT_COIN_AND_CLICK`` row (None when no click matched)."""
    m = row._mapping
    if m["click_id"] is None:
        return None
    return ClickRecord(
        ecoin_id=m["click_ecoin_id"],
        epoch=m["click_epoch"],
        from_index=m["click_from_index"],
        to_index=m["click_to_index"],
        payword=m["click_payword"],
        item_id=m["click_item_id"],
        amount_minor=m["click_amount_minor"],
        currency=m["click_currency"],
        receipt=m["click_receipt"],
        created_at_ms=m["click_created_at_ms"],
    )


@dataclass(frozen=True)
class EpochGrant:
    """A new epoch granted by the broker, as the repository stores it."""

    ecoin_id: str
    epoch: int
    base_index: int
    base_word: bytes
    n: int
    unit_value_minor: int
    currency: str
    expires_at_ms: int
    touchstone: bytes
    lease_deadline_ms: int


class CoinRepo:
    """Reads and compare-and-sets on ``vendor_coins`` and ``vendor_clicks``, in one
    unit of work (the unit commits)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, ecoin_id: str) -> StoredCoin | None:
        """The coin row as stored now (a fresh read, never the identity map)."""
        row = self._session.connection().execute(_SELECT_COIN, {"p_ecoin_id": ecoin_id}).first()
        return stored_coin(row) if row is not None else None

    def pay_lookup(
        self, ecoin_id: str, to_index: int
    ) -> tuple[StoredCoin | None, ClickRecord | None]:
        """One read for a payment: the coin row and the click that took ``to_index``.

        The click is only found with its coin row (a click implies a coin row).
        """
        row = (
            self._session.connection()
            .execute(_SELECT_COIN_AND_CLICK, {"p_ecoin_id": ecoin_id, "p_to_index": to_index})
            .first()
        )
        if row is None:
            return None, None
        return stored_coin(row), _lookup_click(row)

    # -- custody ---------------------------------------------------------------

    def open_epoch(self, grant: EpochGrant, now_ms: int) -> StoredCoin | None:
        """Store a new epoch for this vendor; an existing row at the same or a
        later epoch is authoritative and is returned unchanged. ``None``: a
        concurrent request inserted the coin's first row (leave the unit; it
        rolls back)."""
        row = self._session.get(CoinRow, grant.ecoin_id, populate_existing=True)
        if row is None:
            return self._insert(grant, now_ms)
        if row.epoch >= grant.epoch:
            return stored_coin(row)
        current = VendorCoinState(row.state)
        if current is not VendorCoinState.CLOSED:
            # We missed the end of our older epoch: close it first.
            current = transition(current, CoinEvent.EPOCH_CLOSED)
        state = transition(current, CoinEvent.ACQUIRED)
        row.epoch = grant.epoch
        row.state = state.value
        row.idx = grant.base_index
        row.payword = grant.base_word
        row.base_index = grant.base_index
        row.base_word = grant.base_word
        row.touchstone = grant.touchstone
        row.lease_deadline_ms = grant.lease_deadline_ms
        row.acknowledged_index = grant.base_index
        row.handoff_to = None
        row.handoff_coin_index = None
        row.handoff_started_ms = None
        row.updated_at_ms = now_ms
        self._session.flush()
        return stored_coin(row)

    def _insert(self, grant: EpochGrant, now_ms: int) -> StoredCoin | None:
        """The coin's first row here, HELD in the granted epoch."""
        state = transition(None, CoinEvent.ACQUIRED)
        row = CoinRow(
            ecoin_id=grant.ecoin_id,
            epoch=grant.epoch,
            state=state.value,
            idx=grant.base_index,
            payword=grant.base_word,
            base_index=grant.base_index,
            base_word=grant.base_word,
            n=grant.n,
            unit_value_minor=grant.unit_value_minor,
            currency=grant.currency,
            expires_at_ms=grant.expires_at_ms,
            touchstone=grant.touchstone,
            lease_deadline_ms=grant.lease_deadline_ms,
            acknowledged_index=grant.base_index,
            max_accepted_index=0,
            handoff_to=None,
            handoff_coin_index=None,
            handoff_started_ms=None,
            updated_at_ms=now_ms,
        )
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError:
            return None
        return stored_coin(row)

    def cas_pay(
        self,
        *,
        ecoin_id: str,
        epoch: int,
        from_index: int,
        to_index: int,
        payword: bytes,
        now_ms: int,
    ) -> bool:
        """Move the index ``from_index -> to_index`` if the coin is HELD in
        ``epoch`` at ``from_index`` with a live lease."""
        new_state = transition(VendorCoinState.HELD, CoinEvent.PAID)
        result = self._session.connection().execute(
            _CAS_PAY,
            {
                "p_ecoin_id": ecoin_id,
                "p_epoch": epoch,
                "p_from_index": from_index,
                "p_held": VendorCoinState.HELD.value,
                "p_now_ms": now_ms,
                "p_new_state": new_state.value,
                "p_to_index": to_index,
                "p_payword": payword,
            },
        )
        return rowcount(result) == 1

    def start_handoff(
        self,
        *,
        ecoin_id: str,
        epoch: int,
        index: int,
        to_vendor: str,
        coin_index: bytes,
        now_ms: int,
    ) -> bool:
        """HELD -> HANDING_OFF with the same compare-and-set payments use."""
        new_state = transition(VendorCoinState.HELD, CoinEvent.HANDOFF_STARTED)
        result = self._session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == epoch,
                CoinRow.idx == index,
                CoinRow.state == VendorCoinState.HELD.value,
            )
            .values(
                state=new_state.value,
                handoff_to=to_vendor,
                handoff_coin_index=coin_index,
                handoff_started_ms=now_ms,
                lease_deadline_ms=0,
                updated_at_ms=now_ms,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def reclaimed(
        self,
        *,
        ecoin_id: str,
        old_epoch: int,
        new_epoch: int,
        base_index: int,
        base_word: bytes,
        lease_deadline_ms: int,
        now_ms: int,
    ) -> bool:
        """HANDING_OFF in ``old_epoch`` -> HELD in ``new_epoch`` (Reclaim committed)."""
        new_state = transition(VendorCoinState.HANDING_OFF, CoinEvent.RECLAIMED)
        result = self._session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == old_epoch,
                CoinRow.state == VendorCoinState.HANDING_OFF.value,
            )
            .values(
                state=new_state.value,
                epoch=new_epoch,
                idx=base_index,
                payword=base_word,
                base_index=base_index,
                base_word=base_word,
                acknowledged_index=base_index,
                lease_deadline_ms=lease_deadline_ms,
                handoff_to=None,
                handoff_coin_index=None,
                handoff_started_ms=None,
                updated_at_ms=now_ms,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def close_epoch(self, *, ecoin_id: str, epoch: int, now_ms: int) -> bool:
        """HELD or HANDING_OFF in ``epoch`` -> CLOSED (the epoch is not ours any more)."""
        row = self._session.get(CoinRow, ecoin_id, populate_existing=True)
        if row is None or row.epoch != epoch:
            return False
        current = VendorCoinState(row.state)
        if current is VendorCoinState.CLOSED:
            return False
        new_state = transition(current, CoinEvent.EPOCH_CLOSED)
        result = self._session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == epoch,
                CoinRow.state == current.value,
            )
            .values(state=new_state.value, lease_deadline_ms=0, updated_at_ms=now_ms)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def renew_lease(
        self,
        *,
        ecoin_id: str,
        epoch: int,
        lease_deadline_ms: int,
        acknowledged_index: int,
    ) -> bool:
        """Raise the lease deadline and the acknowledged index (never lowers either)."""
        result = self._session.execute(
            update(CoinRow)
            .where(
                CoinRow.ecoin_id == ecoin_id,
                CoinRow.epoch == epoch,
                CoinRow.state == VendorCoinState.HELD.value,
            )
            .values(
                lease_deadline_ms=case(
                    (CoinRow.lease_deadline_ms < lease_deadline_ms, lease_deadline_ms),
                    else_=CoinRow.lease_deadline_ms,
                ),
                acknowledged_index=case(
                    (CoinRow.acknowledged_index < acknowledged_index, acknowledged_index),
                    else_=CoinRow.acknowledged_index,
                ),
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def drop_lease(self, *, ecoin_id: str, epoch: int) -> None:
        self._session.execute(
            update(CoinRow)
            .where(CoinRow.ecoin_id == ecoin_id, CoinRow.epoch == epoch)
            .values(lease_deadline_ms=0)
            .execution_options(synchronize_session=False)
        )

    def drop_all_leases(self) -> None:
        """At start: a restarted vendor holds no lease until it has renewed."""
        self._session.execute(
            update(CoinRow).values(lease_deadline_ms=0).execution_options(synchronize_session=False)
        )

    def held_coins(self, *, after_ecoin_id: str = "", limit: int = 10_000) -> list[StoredCoin]:
        rows = self._session.scalars(
            select(CoinRow)
            .where(CoinRow.state == VendorCoinState.HELD.value, CoinRow.ecoin_id > after_ecoin_id)
            .order_by(CoinRow.ecoin_id)
            .limit(limit)
        )
        return [stored_coin(r) for r in rows]

    def handoffs_started_before(self, cutoff_ms: int, *, limit: int = 1_000) -> list[StoredCoin]:
        rows = self._session.scalars(
            select(CoinRow)
            .where(
                CoinRow.state == VendorCoinState.HANDING_OFF.value,
                CoinRow.handoff_started_ms <= cutoff_ms,
            )
            .order_by(CoinRow.handoff_started_ms)
            .limit(limit)
        )
        return [stored_coin(r) for r in rows]

    # -- click log -------------------------------------------------------------

    def add_click(self, click: ClickRecord) -> bool:
        """Insert one click; False when ``(ecoin_id, to_index)`` is taken (leave the
        unit: it rolls back, and the payment's compare-and-set with it)."""
        try:
            self._session.connection().execute(
                _INSERT_CLICK,
                {
                    "p_ecoin_id": click.ecoin_id,
                    "p_epoch": click.epoch,
                    "p_from_index": click.from_index,
                    "p_to_index": click.to_index,
                    "p_payword": click.payword,
                    "p_item_id": click.item_id,
                    "p_amount_minor": click.amount_minor,
                    "p_currency": click.currency,
                    "p_receipt": click.receipt,
                    "p_created_at_ms": click.created_at_ms,
                },
            )
        except IntegrityError:
            return False
        return True

    def words_near(self, ecoin_id: str, index: int) -> list[tuple[int, bytes]]:
        """``(to_index, w[to_index])`` of the clicks nearest ``index`` in the click log
        (any epoch): the highest at or below it and the lowest above it. Read on a
        refusal's path only, to tell a genuine word from a made-up one."""
        near: list[tuple[int, bytes]] = []
        for where, order in (
            (ClickRow.to_index <= index, ClickRow.to_index.desc()),
            (ClickRow.to_index > index, ClickRow.to_index.asc()),
        ):
            row = self._session.execute(
                select(ClickRow.to_index, ClickRow.payword)
                .where(ClickRow.ecoin_id == ecoin_id, where)
                .order_by(order)
                .limit(1)
            ).first()
            if row is not None:
                near.append((row.to_index, row.payword))
        return near

    def clicks(self, ecoin_id: str) -> Sequence[ClickRecord]:
        rows = self._session.scalars(
            select(ClickRow).where(ClickRow.ecoin_id == ecoin_id).order_by(ClickRow.to_index)
        )
        return [click_record(r) for r in rows]

    # -- refunds on their way back (shown to the reader) -------------------------

    def set_refund_pending(self, ecoin_id: str, units: int, now_ms: int) -> bool:
        """Remember what the broker said is on its way back to the coin's reader;
        False when a concurrent request inserted the coin's row first (leave the
        unit; it rolls back)."""
        row = self._session.get(CoinRefundRow, ecoin_id, populate_existing=True)
        if row is None:
            if units:
                self._session.add(
                    CoinRefundRow(
                        ecoin_id=ecoin_id, refund_pending_units=units, updated_at_ms=now_ms
                    )
                )
                try:
                    self._session.flush()
                except IntegrityError:
                    return False
            return True
        row.refund_pending_units = units
        row.updated_at_ms = now_ms
        return True

    def refund_pending_units(self, ecoin_id: str) -> int:
        found = self._session.scalar(
            select(CoinRefundRow.refund_pending_units).where(CoinRefundRow.ecoin_id == ecoin_id)
        )
        return int(found or 0)
