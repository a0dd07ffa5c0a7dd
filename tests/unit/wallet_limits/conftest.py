"""Fixtures for the reader-money unit tests: spending limits and auto-load.

The fixtures are those of tests/fakes/wallet_fixtures.py: the fake broker
(readers, balances, coins, lost replies, injected failures) and the fake
newspaper with clicks and cookie-cache windows, served by werkzeug on
127.0.0.1:0. Every party shares one FakeClock, so a test moves to the next
UTC day without sleeping.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.wallet_fixtures import add_active_coin as add_coin
from tests.fakes.wallet_fixtures import (  # noqa: F401 (fixtures, re-exported)
    broker,
    clock,
    grpc_broker,
    make_wallet,
    start_vendor,
    store,
    vendor,
    wallet,
    wallet_dir,
)
from tests.fakes.wallet_store import StoreShortcuts

__all__ = ["add_coin", "allocate"]


def allocate(
    store: StoreShortcuts,  # noqa: F811 (not the fixture)
    amount: int,
    now_ms: int,
    **kwargs: Any,
) -> int:
    """One click of ``amount`` EUR cents at the vendor "daily"; returns the new index."""
    alloc = store.allocate(
        amount_minor=amount,
        currency="EUR",
        realm="daily",
        url="http://127.0.0.1:1/articles/1",
        now_ms=now_ms,
        skew_ms=5000,
        **kwargs,
    )
    return alloc.index
