"""Fixtures for the wallet's unit tests: the fake broker and a tiny vendor web site.

They are the ones tests/unit/wallet_windows and tests/unit/wallet_limits use
too (tests/fakes/wallet_fixtures.py): the fake broker (tests/fakes/broker/)
and the fake newspaper (tests/fakes/vendor.py) that implements the 402 flow
of protocol.md closely enough for the wallet: the challenge, the rules on
(prev, index), hashing down to its stored word, signed receipts, replays,
and injected answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from netpay.clock import FakeClock
from tests.fakes.broker import DAY_MS
from tests.fakes.wallet_fixtures import (  # noqa: F401 (fixtures, re-exported)
    add_active_coin,
    broker,
    clock,
    grpc_broker,
    make_wallet,
    start_vendor,
    vendor,
    wallet,
    wallet_dir,
)
from tests.fakes.wallet_store import StoreShortcuts


@pytest.fixture
def add_coin(clock: FakeClock) -> Any:  # noqa: F811 (the re-exported fixture)
    """Put an active coin straight into a store (no broker); returns its id."""

    def add(
        store: StoreShortcuts,
        n: int = 1000,
        unit_value_minor: int = 1,
        currency: str = "EUR",
        expires_in_ms: int = 90 * DAY_MS,
    ) -> str:
        now_ms = clock.now_ms()
        return add_active_coin(
            store,
            now_ms,
            n,
            unit_value_minor=unit_value_minor,
            currency=currency,
            expires_at_ms=now_ms + expires_in_ms,
        )

    return add
