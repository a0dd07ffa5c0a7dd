"""The vendor's daily redemption time (``--redeem-at``) and its loop step."""

from __future__ import annotations

import pytest

from netpay.clock import FakeClock
from netpay.errors import InvalidArgument
from vendor.server import _DailyRedemption
from vendor.services.redeem import RedeemReport, next_redemption_ms, parse_time_of_day

DAY_MS = 86_400_000
THREE_AM = 3 * 3_600_000


def test_time_of_day_parsing() -> None:
    assert parse_time_of_day("03:00") == THREE_AM
    assert parse_time_of_day("0:05") == 5 * 60_000
    assert parse_time_of_day("23:59") == DAY_MS - 60_000
    for bad in ("24:00", "3", "03:60", "ab:cd", "03:0", "-1:00", "003:00"):
        with pytest.raises(InvalidArgument):
            parse_time_of_day(bad)


def test_the_next_run_is_strictly_later_today_or_tomorrow() -> None:
    midnight = 20_000 * DAY_MS
    assert next_redemption_ms(midnight, THREE_AM) == midnight + THREE_AM
    assert next_redemption_ms(midnight + THREE_AM, THREE_AM) == midnight + DAY_MS + THREE_AM
    assert next_redemption_ms(midnight + THREE_AM - 1, THREE_AM) == midnight + THREE_AM


class CountingRedeemer:
    def __init__(self) -> None:
        self.runs = 0

    def redeem(self) -> RedeemReport:
        self.runs += 1
        return RedeemReport()


def test_the_loop_redeems_once_a_day_at_the_time() -> None:
    clock = FakeClock(start_ms=20_000 * DAY_MS + THREE_AM - 60_000)  # 02:59 UTC
    redeemer = CountingRedeemer()
    daily = _DailyRedemption(redeemer, clock, THREE_AM)  # type: ignore[arg-type]
    daily.run_if_due()
    assert redeemer.runs == 0
    clock.advance(60)  # 03:00
    daily.run_if_due()
    daily.run_if_due()  # the loop ticks again the same minute: once only
    assert redeemer.runs == 1
    clock.advance(86_400 - 1)
    daily.run_if_due()
    assert redeemer.runs == 1
    clock.advance(1)  # 03:00 the next day
    daily.run_if_due()
    assert redeemer.runs == 2
    off = _DailyRedemption(redeemer, clock, None)  # type: ignore[arg-type]
    clock.advance(10 * 86_400)
    off.run_if_due()
    assert redeemer.runs == 2
