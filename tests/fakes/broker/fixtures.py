"""The clock and the fake broker every party of a unit test shares.

tests/fakes/wallet_fixtures.py and tests/fakes/vendor_fixtures.py re-export
them, so the wallet tests and the vendor tests start from the same broker.
"""

from __future__ import annotations

import pytest

from netpay.clock import FakeClock
from tests.fakes.broker.model import FakeBroker

__all__ = ["broker", "clock"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> FakeBroker:
    return FakeBroker(clock)
