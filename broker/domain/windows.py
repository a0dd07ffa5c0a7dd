"""Server-side windows: how many units one DrawWindow may release. No I/O.

Whether a window may be drawn at all (the holder, a live lease, no hand-off
grant) is the coin's state machine's: :func:`broker.domain.coins.check_can_draw`.
"""

from __future__ import annotations

from dataclasses import dataclass

from netpay.errors import Insufficient, InvalidArgument, LimitExceeded

__all__ = ["WindowRequest", "allowed_window_units"]


@dataclass(frozen=True)
class WindowRequest:
    """A DrawWindow as the spending rules see it."""

    units: int
    latest_index: int
    n: int
    max_window_units: int
    grant_max_units: int
    grant_drawn_units: int


def allowed_window_units(req: WindowRequest) -> int:
    """The units a server-side window may release: the one place spending limits live.

    ``1 <= units <= max_window_units``, no more than the coin has left
    (``insufficient``) and no more than the WalletGrant still allows
    (``limit_exceeded``). The reader's own daily limit (netpay.spending) is
    checked by the service with the day's counter, a compare-and-set.
    """
    if req.units < 1:
        raise InvalidArgument("a window has at least 1 unit")
    if req.units > req.max_window_units:
        raise LimitExceeded(f"a window has at most {req.max_window_units} units")
    left = req.n - req.latest_index
    if req.units > left:
        raise Insufficient(f"the coin has {left} words left, the window asks {req.units}")
    grant_left = req.grant_max_units - req.grant_drawn_units
    if req.units > grant_left:
        raise LimitExceeded(f"the wallet grant allows {max(grant_left, 0)} more units")
    return req.units
