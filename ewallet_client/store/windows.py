"""The windows aggregate: the cookie-cache windows the wallet opened.

``handle`` is the vendor's cookie value: a bearer secret that spends the
window's words. It lives only here (the file is 0600) and is erased when the
window closes. Every change of a window's state goes through
:func:`ewallet_client.domain.window_transition`, with a compare-and-set on
the state.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ewallet_client.domain import CoinView, WindowEvent, WindowState, window_transition
from ewallet_client.store.records import WindowView
from ewallet_client.store.tables import MAX_ORIGIN_CHARS, MAX_URL_CHARS, WindowRow, rowcount
from netpay.errors import Conflict, NotFound
from netpay.v1 import statements_pb2 as pb

__all__ = ["WindowRepo"]

_LIVE_WINDOW_STATES = (
    WindowState.OPENING.value,
    WindowState.OPEN.value,
    WindowState.UNUSABLE.value,
)
_CLOSED_STATES = (WindowState.CLOSED, WindowState.GONE, WindowState.FAILED)


def _window_view(row: WindowRow) -> WindowView:
    return WindowView(
        window_id=row.id,
        vendor_id=row.vendor_id,
        origin=row.origin,
        ecoin_id=row.ecoin_id,
        state=WindowState(row.state),
        window_from=row.window_from,
        window_top=row.window_top,
        unit_value_minor=row.unit_value_minor,
        currency=row.currency,
        consumed_index=row.consumed_index,
        epoch=row.epoch,
        expires_at_ms=row.expires_at_ms,
        url=row.url,
        opened_at_ms=row.opened_at_ms,
        closed_at_ms=row.closed_at_ms,
        refund_units=row.refund_units,
        close_reason=row.close_reason,
        credit=row.credit,
    )


class WindowRepo:
    """The wallet's windows."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _row(self, window_id: int) -> WindowRow:
        row = self._s.get(WindowRow, window_id)
        if row is None:
            raise NotFound(f"no window {window_id} in the wallet")
        return row

    def add_opening(
        self,
        *,
        vendor_id: str,
        origin: str,
        coin: CoinView,
        prev: int,
        index: int,
        url: str,
        now_ms: int,
    ) -> int:
        """Record a window (state ``opening``) over the coin's words ``(prev, index]``."""
        row = WindowRow(
            vendor_id=vendor_id,
            origin=origin[:MAX_ORIGIN_CHARS],
            ecoin_id=coin.ecoin_id,
            state=WindowState.OPENING.value,
            window_from=prev,
            window_top=index,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            consumed_index=prev,
            url=url[:MAX_URL_CHARS],
            opened_at_ms=now_ms,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def coins_windowed_elsewhere(self, vendor_id: str) -> frozenset[str]:
        """The coins with a live window at another vendor than ``vendor_id``."""
        found = self._s.scalars(
            select(WindowRow.ecoin_id).where(
                WindowRow.state.in_(_LIVE_WINDOW_STATES), WindowRow.vendor_id != vendor_id
            )
        ).all()
        return frozenset(found)

    def consume_up_to(self, window_id: int, to_index: int) -> None:
        """The window's consumed index moves up to ``to_index`` (never down)."""
        self._s.execute(
            update(WindowRow)
            .where(WindowRow.id == window_id, WindowRow.consumed_index < to_index)
            .values(consumed_index=to_index)
        )

    def _transition(
        self,
        row: WindowRow,
        event: WindowEvent,
        values: dict[str, object],
        *,
        now_ms: int | None = None,
    ) -> None:
        current = WindowState(row.state)
        new = window_transition(current, event)
        values["state"] = new.value
        if new in _CLOSED_STATES:
            assert now_ms is not None
            values.update(handle=None, closed_at_ms=now_ms)
        moved = rowcount(
            self._s.execute(
                update(WindowRow)
                .where(WindowRow.id == row.id, WindowRow.state == current.value)
                .values(**values)
            )
        )
        if moved != 1:
            raise Conflict(f"window {row.id} changed state meanwhile")
        self._s.flush()
        self._s.refresh(row)

    def accept(
        self, window_id: int, *, epoch: int, expires_at_ms: int, handle: str, consumed_index: int
    ) -> WindowView:
        """The vendor opened the window: keep its epoch, expiry and handle."""
        assert len(handle) <= 64
        row = self._row(window_id)
        assert row.window_from <= consumed_index <= row.window_top
        values: dict[str, object] = {
            "epoch": epoch,
            "expires_at_ms": expires_at_ms,
            "handle": handle,
            "consumed_index": consumed_index,
        }
        self._transition(row, WindowEvent.ACCEPTED, values)
        return _window_view(row)

    def change(
        self,
        window_id: int,
        event: WindowEvent,
        *,
        now_ms: int,
        credit: pb.WindowCredit | None = None,
        credit_envelope: bytes | None = None,
    ) -> WindowView:
        """Apply ``event`` to a window (compare-and-set on its state).

        Closing events (credited, vanished, refused) erase the handle; a
        credit stores the vendor's signed WindowCredit and its consumed index.
        """
        row = self._row(window_id)
        values: dict[str, object] = {}
        if event is WindowEvent.CREDITED:
            assert credit is not None and credit_envelope is not None
            values.update(
                credit=credit_envelope,
                refund_units=credit.refund_units,
                close_reason=credit.reason,
                consumed_index=max(row.consumed_index, credit.consumed_index),
            )
        self._transition(row, event, values, now_ms=now_ms)
        return _window_view(row)

    def get(self, window_id: int) -> WindowView:
        return _window_view(self._row(window_id))

    def handle(self, window_id: int) -> str | None:
        """The window's cookie value (a bearer secret; None once closed)."""
        return self._row(window_id).handle

    def all(self, *, states: tuple[WindowState, ...] | None = None) -> list[WindowView]:
        """The windows, oldest first (``states`` filters)."""
        query = select(WindowRow).order_by(WindowRow.id)
        if states is not None:
            query = query.where(WindowRow.state.in_([st.value for st in states]))
        return [_window_view(r) for r in self._s.scalars(query).all()]

    def at(self, origin: str, *, states: tuple[WindowState, ...]) -> list[WindowView]:
        """The windows at a vendor web origin in ``states``, newest first."""
        if len(origin) > MAX_ORIGIN_CHARS:
            return []
        rows = self._s.scalars(
            select(WindowRow)
            .where(WindowRow.origin == origin, WindowRow.state.in_([st.value for st in states]))
            .order_by(WindowRow.id.desc())
        ).all()
        return [_window_view(r) for r in rows]
