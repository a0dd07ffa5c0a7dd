"""Reader-set spending limits: ONE definition for every wallet kind.

A reader may cap what one click costs and what a UTC day costs, per
currency. The client wallet enforces them for its own coins (client-side
and cookie-cache windows) in the transaction that moves a coin's index; the
broker enforces them for server-side coins when it draws windows (the day
cap) and puts the click cap in the WalletGrant, which the vendor applies to
each click. Everywhere the same rules, from this module:

- a click (or a window's single payment, ``per_click=False`` for a window:
  its clicks are checked one by one later) above ``max_click_minor`` is
  ``limit_exceeded``;
- the day is the UTC day (``utc_day``); what was spent that day plus the new
  amount may not pass ``max_day_minor`` (``limit_exceeded``);
- ``None`` means no limit; a limit is 0..10,000,000 minor units.
"""

from __future__ import annotations

from dataclasses import dataclass

from netpay.errors import InvalidArgument, LimitExceeded

__all__ = ["DAY_MS", "MAX_LIMIT_MINOR", "SpendingLimits", "check_spend", "utc_day"]

DAY_MS = 86_400_000
MAX_LIMIT_MINOR = 10_000_000


def utc_day(now_ms: int) -> int:
    """Days since 1970-01-01 UTC: the key of a daily limit."""
    return now_ms // DAY_MS


@dataclass(frozen=True)
class SpendingLimits:
    """A reader's limits in one currency (None: no limit)."""

    currency: str
    max_click_minor: int | None = None
    max_day_minor: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_click_minor", "max_day_minor"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= MAX_LIMIT_MINOR
            ):
                raise InvalidArgument(f"{name} is 0..{MAX_LIMIT_MINOR} minor units or none")

    @property
    def unlimited(self) -> bool:
        return self.max_click_minor is None and self.max_day_minor is None


def check_spend(
    limits: SpendingLimits | None,
    amount_minor: int,
    spent_today_minor: int,
    *,
    per_click: bool = True,
) -> None:
    """Refuse ``amount_minor`` (``limit_exceeded``) when it breaks a limit."""
    if limits is None:
        return
    if per_click and limits.max_click_minor is not None and amount_minor > limits.max_click_minor:
        raise LimitExceeded(
            f"{amount_minor} {limits.currency} minor units is above your limit of "
            f"{limits.max_click_minor} per click"
        )
    if limits.max_day_minor is not None and spent_today_minor + amount_minor > limits.max_day_minor:
        raise LimitExceeded(
            f"you have spent {spent_today_minor} of your daily limit of {limits.max_day_minor} "
            f"{limits.currency} minor units today; this costs {amount_minor}"
        )
