"""What closes a window and issues its WindowCredit.

A window closes at its consumed index, with a WindowCredit signed for that
index, in the same transaction as whatever closed it: the wallet's close, a
newer window (windows.py), a hand-off or the end of the coin's epoch
(custody.py), expiry. Both custody and windows import this module; neither
imports the other for it.
"""

from __future__ import annotations

import logging

from netpay.envelope import seal
from netpay.v1 import statements_pb2 as pb
from vendor.domain import CloseReason, WindowView
from vendor.services.ports import VendorIdentity
from vendor.storage import VendorUnit

__all__ = ["WindowCredits"]

log = logging.getLogger("vendor.services")


class WindowCredits:
    """Signs WindowCredits and closes windows inside the caller's unit of work."""

    def __init__(self, identity: VendorIdentity) -> None:
        self._id = identity

    def sign(self, window: WindowView, reason: CloseReason, now_ms: int) -> pb.Envelope:
        """The WindowCredit of ``window`` closed now at its consumed index."""
        return seal(
            pb.WindowCredit(
                vendor_id=self._id.vendor_id,
                ecoin_id=window.ecoin_id,
                epoch=window.epoch,
                window_top=window.window_top,
                consumed_index=window.consumed_index,
                refund_units=window.words_left,
                time_ms=now_ms,
                reason=reason.value,
            ),
            self._id.key,
        )

    def close_in(
        self, unit: VendorUnit, window: WindowView, reason: CloseReason, now_ms: int
    ) -> pb.Envelope | None:
        """Close ``window`` at its consumed index inside ``unit`` (the caller
        commits); the signed credit, or ``None`` when the window moved."""
        credit = self.sign(window, reason, now_ms)
        closed = unit.windows.close(
            window_id=window.window_id,
            consumed_index=window.consumed_index,
            reason=reason,
            credit=credit.SerializeToString(),
            now_ms=now_ms,
        )
        return credit if closed else None

    def close_with_epoch(self, unit: VendorUnit, ecoin_id: str, now_ms: int) -> None:
        """The coin's epoch is over here: close its open window inside ``unit``."""
        window = unit.windows.open_of(ecoin_id)
        if window is not None and self.close_in(unit, window, CloseReason.CLOSED, now_ms):
            log.info("window %d of %s closed with its epoch", window.window_id, ecoin_id)
