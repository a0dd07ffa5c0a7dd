"""Redemption's SQL: stored Redeem batches, their claims, the batch lock, and
what can be claimed now (the click log and the windows above the claimed
tops).

:class:`RedemptionRepo` is the only code that reads or writes
``vendor_redemptions``, ``vendor_claims`` and ``vendor_redemption_lock``.
A batch's and a claim's new state come from
:func:`vendor.domain.batch_transition` and :func:`vendor.domain.claim_transition`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from vendor.domain import (
    BatchEvent,
    BatchState,
    ClaimEvent,
    ClaimStatus,
    WindowState,
    batch_transition,
    claim_transition,
)
from vendor.storage.tables import (
    ClaimStateRow,
    ClickRow,
    CoinRow,
    RedemptionBatchRow,
    RedemptionLockRow,
    WindowRow,
)

__all__ = [
    "ClaimRecord",
    "ClickSpan",
    "NewClaim",
    "RedemptionRepo",
    "WindowSpan",
    "claim_record",
]


@dataclass(frozen=True)
class NewClaim:
    """A claim stored with its batch, before the batch is sent."""

    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    units: int  # receipt units claimed
    currency: str


@dataclass(frozen=True)
class ClaimRecord:
    """A stored claim and what the broker said."""

    batch_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    units: int
    status: ClaimStatus
    reason: str | None
    detail: str | None
    paid_minor: int
    currency: str


def claim_record(row: ClaimStateRow) -> ClaimRecord:
    return ClaimRecord(
        batch_id=row.batch_id,
        ecoin_id=row.ecoin_id,
        epoch=int(row.epoch),
        from_index=row.from_index,
        to_index=row.to_index,
        units=row.units,
        status=ClaimStatus(row.status),
        reason=row.reason,
        detail=row.detail,
        paid_minor=int(row.paid_minor),
        currency=row.currency,
    )


@dataclass(frozen=True)
class ClickSpan:
    """A paid click above its (coin, epoch)'s claimed top."""

    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    payword: bytes
    item_id: str
    created_at_ms: int
    receipt: bytes  # the serialized Envelope(Receipt) the click was paid with


@dataclass(frozen=True)
class WindowSpan:
    """A window whose top is above its (coin, epoch)'s claimed top."""

    window_id: int
    ecoin_id: str
    epoch: int
    window_from: int
    window_top: int
    payword: bytes  # w[window_top]
    is_open: bool
    credit: bytes | None  # serialized Envelope(WindowCredit), once closed


def _claimed_subquery(table: type[ClickRow] | type[WindowRow]) -> object:
    """The highest claimed index of the row's (coin, epoch), or -1."""
    return (
        select(func.coalesce(func.max(ClaimStateRow.to_index), -1))
        .where(ClaimStateRow.ecoin_id == table.ecoin_id, ClaimStateRow.epoch == table.epoch)
        .scalar_subquery()
    )


class RedemptionRepo:
    """Batches, claims and the claimable words, in one unit of work (the unit commits)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def lock(self, now_ms: int) -> None:
        """Serialise batch building and refund recording (SQLite: BEGIN IMMEDIATE
        does; PostgreSQL: the row lock)."""
        row = self._session.scalars(
            select(RedemptionLockRow).where(RedemptionLockRow.id == 1).with_for_update()
        ).first()
        if row is None:
            self._session.add(RedemptionLockRow(id=1, last_batch_ms=now_ms))
            self._session.flush()
        else:
            row.last_batch_ms = now_ms

    # -- stored batches --------------------------------------------------------------

    def pending_batches(self) -> list[tuple[str, bytes]]:
        """(batch id, serialized RedeemRequest) of every PENDING batch, oldest first."""
        rows = self._session.execute(
            select(RedemptionBatchRow.batch_id, RedemptionBatchRow.request)
            .where(RedemptionBatchRow.state == BatchState.PENDING.value)
            .order_by(RedemptionBatchRow.created_at_ms, RedemptionBatchRow.batch_id)
        ).all()
        return [(b, r) for b, r in rows]

    def add_batch(
        self, batch_id: str, request: bytes, now_ms: int, claims: Sequence[NewClaim]
    ) -> None:
        """Store a batch (PENDING, with its exact request) and its claims."""
        self._session.add(
            RedemptionBatchRow(
                batch_id=batch_id,
                state=batch_transition(None, BatchEvent.STORED).value,
                request=request,
                created_at_ms=now_ms,
            )
        )
        self._session.flush()
        status = claim_transition(None, ClaimEvent.BATCHED)
        assert status is not None
        self._session.add_all(
            ClaimStateRow(
                batch_id=batch_id,
                ecoin_id=c.ecoin_id,
                epoch=c.epoch,
                from_index=c.from_index,
                to_index=c.to_index,
                units=c.units,
                status=status.value,
                paid_minor=0,
                currency=c.currency,
            )
            for c in claims
        )

    def end_batch(
        self, batch_id: str, event: BatchEvent, now_ms: int, response: bytes | None = None
    ) -> None:
        """PENDING -> DONE (with the broker's reply) or FAILED."""
        state = batch_transition(BatchState.PENDING, event)
        values: dict[str, object] = {"state": state.value, "finished_at_ms": now_ms}
        if response is not None:
            values["response"] = response
        self._session.execute(
            update(RedemptionBatchRow)
            .where(
                RedemptionBatchRow.batch_id == batch_id,
                RedemptionBatchRow.state == BatchState.PENDING.value,
            )
            .values(**values)
        )

    # -- claims ----------------------------------------------------------------------

    def answer_claim(
        self,
        batch_id: str,
        ecoin_id: str,
        epoch: int,
        to_index: int,
        event: ClaimEvent,
        **values: object,
    ) -> None:
        """Move the batch's PENDING claim of ``(ecoin_id, epoch, .., to_index]`` on
        ``event`` (with ``values``: ``paid_minor``, ``reason``, ``detail``); a
        withdrawn claim is deleted, so its words are claimed again."""
        status = claim_transition(ClaimStatus.PENDING, event)
        where = (
            ClaimStateRow.batch_id == batch_id,
            ClaimStateRow.ecoin_id == ecoin_id,
            ClaimStateRow.epoch == epoch,
            ClaimStateRow.to_index == to_index,
            ClaimStateRow.status == ClaimStatus.PENDING.value,
        )
        if status is None:
            self._session.execute(delete(ClaimStateRow).where(*where))
            return
        self._session.execute(
            update(ClaimStateRow).where(*where).values(status=status.value, **values)
        )

    def withdraw_claims(self, batch_id: str) -> None:
        """The broker refused the whole batch: its claims are forgotten."""
        assert claim_transition(ClaimStatus.PENDING, ClaimEvent.WITHDRAWN) is None
        self._session.execute(delete(ClaimStateRow).where(ClaimStateRow.batch_id == batch_id))

    def covering_claim(self, ecoin_id: str, epoch: int, to_index: int) -> ClaimRecord | None:
        """The claim whose span holds the Receipt ending at ``to_index`` (claims of an
        epoch never overlap; a claim turned down for now is deleted and made again)."""
        row = self._session.scalars(
            select(ClaimStateRow)
            .where(
                ClaimStateRow.ecoin_id == ecoin_id,
                ClaimStateRow.epoch == epoch,
                ClaimStateRow.from_index < to_index,
                ClaimStateRow.to_index >= to_index,
            )
            .order_by(ClaimStateRow.id.desc())
            .limit(1)
        ).first()
        return claim_record(row) if row is not None else None

    # -- what can be claimed ------------------------------------------------------------

    def claimed_tops(self) -> dict[tuple[str, int], int]:
        """Per (coin, epoch), the highest index already claimed (pending, accepted or refused)."""
        rows = self._session.execute(
            select(
                ClaimStateRow.ecoin_id, ClaimStateRow.epoch, func.max(ClaimStateRow.to_index)
            ).group_by(ClaimStateRow.ecoin_id, ClaimStateRow.epoch)
        ).all()
        return {(e, int(ep)): int(top) for e, ep, top in rows}

    def unclaimed_clicks(self) -> list[ClickSpan]:
        """Paid clicks above their (coin, epoch)'s claimed top."""
        rows = self._session.execute(
            select(
                ClickRow.ecoin_id,
                ClickRow.epoch,
                ClickRow.from_index,
                ClickRow.to_index,
                ClickRow.payword,
                ClickRow.item_id,
                ClickRow.created_at_ms,
                ClickRow.receipt,
            ).where(ClickRow.to_index > _claimed_subquery(ClickRow))
        ).all()
        return [
            ClickSpan(ecoin_id, int(epoch), frm, to, word, item_id, at_ms, receipt)
            for ecoin_id, epoch, frm, to, word, item_id, at_ms, receipt in rows
        ]

    def unclaimed_windows(self) -> list[WindowSpan]:
        """Windows whose top is above their (coin, epoch)'s claimed top."""
        rows = self._session.scalars(
            select(WindowRow).where(WindowRow.window_top > _claimed_subquery(WindowRow))
        ).all()
        return [
            WindowSpan(
                window_id=w.id,
                ecoin_id=w.ecoin_id,
                epoch=int(w.epoch),
                window_from=w.window_from,
                window_top=w.window_top,
                payword=w.payword,
                is_open=w.state == WindowState.OPEN.value,
                credit=w.credit,
            )
            for w in rows
        ]

    def currencies(self, ecoin_ids: Iterable[str]) -> dict[str, str]:
        """The currency of each coin."""
        return dict(
            self._session.execute(
                select(CoinRow.ecoin_id, CoinRow.currency).where(
                    CoinRow.ecoin_id.in_(set(ecoin_ids))
                )
            ).all()
        )
