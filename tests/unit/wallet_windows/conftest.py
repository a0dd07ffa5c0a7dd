"""Fixtures for the wallet-window unit tests: a broker and a newspaper with windows.

The fake broker (tests/fakes/broker/) signs touchstones and vendor
certificates; the fake vendor (tests/fakes/vendor.py) implements the window
contract closely enough for the wallet: a click paid from the window's
cookie with a signed Receipt inside it, ``POST /netpay/window`` (the spend
of (p, p+m] and a random 32-byte handle cookie) and ``POST
/netpay/window/close`` (a signed WindowCredit for the rest). The fixtures
are those of tests/fakes/wallet_fixtures.py; the wallet here holds a coin.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ewallet_client.wallet import Wallet
from tests.fakes.wallet_fixtures import (  # noqa: F401 (fixtures, re-exported)
    PASSWORD,
    broker,
    clock,
    make_wallet,
    start_vendor,
    vendor,
    wallet_dir,
)


@pytest.fixture
def wallet(make_wallet: Callable[[], Wallet]) -> Wallet:  # noqa: F811 (the re-exported fixture)
    """A wallet registered at the fake broker with one 1000-word coin of 1 cent."""
    w = make_wallet()
    w.register("127.0.0.1:7000", "ann", PASSWORD)
    w.buy(1000)
    return w
