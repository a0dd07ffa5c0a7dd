"""netpay.spending: the one definition of reader spending limits."""

from __future__ import annotations

import pytest

from netpay.errors import InvalidArgument, LimitExceeded
from netpay.spending import DAY_MS, SpendingLimits, check_spend, utc_day


def test_per_click_and_per_day_limits() -> None:
    limits = SpendingLimits("EUR", max_click_minor=25, max_day_minor=100)
    check_spend(limits, 25, 75)  # exactly at both limits
    with pytest.raises(LimitExceeded, match="per click"):
        check_spend(limits, 26, 0)
    with pytest.raises(LimitExceeded, match="daily limit"):
        check_spend(limits, 25, 76)
    # A window's single payment is not a click: only the day counts.
    check_spend(limits, 60, 40, per_click=False)
    with pytest.raises(LimitExceeded):
        check_spend(limits, 61, 40, per_click=False)


def test_no_limits() -> None:
    check_spend(None, 10**9, 10**9)
    unlimited = SpendingLimits("EUR")
    assert unlimited.unlimited
    check_spend(unlimited, 10**6, 10**9)


@pytest.mark.parametrize("bad", [-1, 10_000_001, True, 2.5])
def test_limits_are_bounded_integers(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        SpendingLimits("EUR", max_click_minor=bad)  # type: ignore[arg-type]


def test_the_day_is_the_utc_day() -> None:
    assert utc_day(DAY_MS - 1) == 0 and utc_day(DAY_MS) == 1
