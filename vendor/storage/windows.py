"""Windows and their clicks (``vendor_windows``, ``vendor_window_clicks``).

:class:`WindowRepo` opens a window, consumes from it with a compare-and-set
on its consumed index (the coin still HELD in the window's epoch with a live
lease), logs the clicks it paid, and closes it with its WindowCredit. Every
move's new state comes from :func:`vendor.domain.window_transition`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendor.domain import (
    CloseReason,
    VendorCoinState,
    WindowEvent,
    WindowState,
    WindowView,
    window_transition,
)
from vendor.storage.tables import CoinRow, WindowClickRow, WindowRow, rowcount

__all__ = [
    "WindowClickRecord",
    "WindowRecord",
    "WindowRepo",
    "window_click_record",
    "window_view",
]


@dataclass(frozen=True)
class WindowRecord:
    """A window to insert (its id is given by the database)."""

    ecoin_id: str
    epoch: int
    handle_sha256: bytes
    window_from: int
    window_top: int
    payword: bytes
    unit_value_minor: int
    currency: str
    opened_at_ms: int
    expires_at_ms: int
    # The coin's index before the opening payment (its compare-and-set moves it
    # from there): the void_from of the window's first click.
    void_from: int


@dataclass(frozen=True)
class WindowClickRecord:
    window_id: int
    item_id: str
    from_index: int
    to_index: int
    amount_minor: int
    currency: str
    receipt: bytes
    created_at_ms: int


def window_view(row: WindowRow) -> WindowView:
    return WindowView(
        window_id=row.id,
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        window_from=row.window_from,
        window_top=row.window_top,
        consumed_index=row.consumed_index,
        state=WindowState(row.state),
        opened_at_ms=row.opened_at_ms,
        expires_at_ms=row.expires_at_ms,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        closed_at_ms=row.closed_at_ms,
        close_reason=CloseReason(row.close_reason) if row.close_reason else None,
        credit=row.credit,
        void_from=row.void_from,
    )


def window_click_record(row: WindowClickRow) -> WindowClickRecord:
    return WindowClickRecord(
        window_id=row.window_id,
        item_id=row.item_id,
        from_index=row.from_index,
        to_index=row.to_index,
        amount_minor=row.amount_minor,
        currency=row.currency,
        receipt=row.receipt,
        created_at_ms=row.created_at_ms,
    )


class WindowRepo:
    """Reads and compare-and-sets on windows and window clicks, in one unit of
    work (the unit commits)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, window: WindowRecord) -> int | None:
        """Insert an OPEN window; its id, or ``None`` when the coin already has an
        open window, or the handle or the top is taken (leave the unit: it rolls
        back)."""
        state = window_transition(None, WindowEvent.OPENED)
        row = WindowRow(
            ecoin_id=window.ecoin_id,
            epoch=window.epoch,
            handle_sha256=window.handle_sha256,
            window_from=window.window_from,
            window_top=window.window_top,
            payword=window.payword,
            consumed_index=window.window_from,
            state=state.value,
            unit_value_minor=window.unit_value_minor,
            currency=window.currency,
            opened_at_ms=window.opened_at_ms,
            expires_at_ms=window.expires_at_ms,
            closed_at_ms=None,
            close_reason=None,
            credit=None,
            void_from=window.void_from,
        )
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError:
            return None
        return row.id

    def get(self, window_id: int) -> WindowView | None:
        row = self._session.scalars(select(WindowRow).where(WindowRow.id == window_id)).first()
        return window_view(row) if row is not None else None

    def by_handle(self, handle_sha256: bytes) -> WindowView | None:
        row = self._session.scalars(
            select(WindowRow).where(WindowRow.handle_sha256 == handle_sha256)
        ).first()
        return window_view(row) if row is not None else None

    def at_top(self, ecoin_id: str, window_top: int) -> tuple[WindowView, bytes, bytes] | None:
        """The window opened up to ``window_top``, its ``w[top]`` and handle digest."""
        row = self._session.scalars(
            select(WindowRow).where(
                WindowRow.ecoin_id == ecoin_id, WindowRow.window_top == window_top
            )
        ).first()
        return (window_view(row), row.payword, row.handle_sha256) if row is not None else None

    def open_of(self, ecoin_id: str) -> WindowView | None:
        row = self._session.scalars(
            select(WindowRow).where(
                WindowRow.ecoin_id == ecoin_id, WindowRow.state == WindowState.OPEN.value
            )
        ).first()
        return window_view(row) if row is not None else None

    def of_coin(self, ecoin_id: str) -> list[WindowView]:
        rows = self._session.scalars(
            select(WindowRow).where(WindowRow.ecoin_id == ecoin_id).order_by(WindowRow.id)
        )
        return [window_view(r) for r in rows]

    def handoff_credit(self, ecoin_id: str, epoch: int) -> bytes | None:
        """The WindowCredit of the window a hand-off of ``epoch`` closed, if any."""
        return self._session.scalars(
            select(WindowRow.credit).where(
                WindowRow.ecoin_id == ecoin_id,
                WindowRow.epoch == epoch,
                WindowRow.close_reason == CloseReason.HANDOFF.value,
            )
        ).first()

    def cas_consume(
        self,
        *,
        window_id: int,
        ecoin_id: str,
        epoch: int,
        from_index: int,
        to_index: int,
        now_ms: int,
    ) -> bool:
        """Move the window's consumed index ``from_index -> to_index`` if the
        window is OPEN, unexpired, at ``from_index`` with room up to
        ``to_index``, and the coin is HELD in ``epoch`` with a live lease."""
        state = window_transition(WindowState.OPEN, WindowEvent.CONSUMED)
        coin_live = exists().where(
            CoinRow.ecoin_id == ecoin_id,
            CoinRow.epoch == epoch,
            CoinRow.state == VendorCoinState.HELD.value,
            CoinRow.lease_deadline_ms > now_ms,
        )
        result = self._session.execute(
            update(WindowRow)
            .where(
                WindowRow.id == window_id,
                WindowRow.ecoin_id == ecoin_id,
                WindowRow.epoch == epoch,
                WindowRow.state == WindowState.OPEN.value,
                WindowRow.consumed_index == from_index,
                WindowRow.window_top >= to_index,
                WindowRow.expires_at_ms > now_ms,
                coin_live,
            )
            .values(consumed_index=to_index, state=state.value)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def add_click(self, click: WindowClickRecord) -> bool:
        """Insert one window click; False when ``(window_id, to_index)`` is taken
        (leave the unit: it rolls back, and the consumption with it)."""
        self._session.add(
            WindowClickRow(
                window_id=click.window_id,
                item_id=click.item_id,
                from_index=click.from_index,
                to_index=click.to_index,
                amount_minor=click.amount_minor,
                currency=click.currency,
                receipt=click.receipt,
                created_at_ms=click.created_at_ms,
            )
        )
        try:
            self._session.flush()
        except IntegrityError:
            return False
        return True

    def click_for(self, window_id: int, item_id: str, since_ms: int) -> WindowClickRecord | None:
        """The newest click of ``item_id`` from the window at or after ``since_ms``."""
        row = self._session.scalars(
            select(WindowClickRow)
            .where(
                WindowClickRow.window_id == window_id,
                WindowClickRow.item_id == item_id,
                WindowClickRow.created_at_ms >= since_ms,
            )
            .order_by(WindowClickRow.to_index.desc())
            .limit(1)
        ).first()
        return window_click_record(row) if row is not None else None

    def clicks(self, window_id: int) -> list[WindowClickRecord]:
        rows = self._session.scalars(
            select(WindowClickRow)
            .where(WindowClickRow.window_id == window_id)
            .order_by(WindowClickRow.to_index)
        )
        return [window_click_record(r) for r in rows]

    def close(
        self,
        *,
        window_id: int,
        consumed_index: int,
        reason: CloseReason,
        credit: bytes,
        now_ms: int,
    ) -> bool:
        """OPEN -> CLOSED if still OPEN at ``consumed_index`` (the credit signed
        for that index stays true)."""
        state = window_transition(WindowState.OPEN, WindowEvent.CLOSED)
        result = self._session.execute(
            update(WindowRow)
            .where(
                WindowRow.id == window_id,
                WindowRow.state == WindowState.OPEN.value,
                WindowRow.consumed_index == consumed_index,
            )
            .values(
                state=state.value,
                closed_at_ms=now_ms,
                close_reason=reason.value,
                credit=credit,
            )
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def due(self, now_ms: int, *, limit: int = 1_000) -> list[WindowView]:
        """OPEN windows whose expiry has passed, oldest first."""
        rows = self._session.scalars(
            select(WindowRow)
            .where(WindowRow.state == WindowState.OPEN.value, WindowRow.expires_at_ms <= now_ms)
            .order_by(WindowRow.expires_at_ms, WindowRow.id)
            .limit(limit)
        )
        return [window_view(r) for r in rows]
