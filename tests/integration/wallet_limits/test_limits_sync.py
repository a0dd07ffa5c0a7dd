"""One set of spending limits: set in the wallet, kept at the broker too; set at the
broker (the portal), taken into the wallet at login or with --sync."""

from __future__ import annotations

import pytest

from netpay.errors import LimitExceeded
from netpay.spending import SpendingLimits
from tests.fakes.wallet_store import shortcuts

from .conftest import PASSWORD, World


def broker_limits(world: World) -> SpendingLimits:
    with world.broker.services.store.begin(read_only=True) as repos:
        row = repos.readers.by_username("ann")
        assert row is not None
        found = repos.spending.limits_in(row.reader_id, "EUR")
    assert found is not None
    return found


def test_limits_set_in_the_wallet_are_kept_at_the_broker(world: World) -> None:
    world.wallet.set_spending_limits("EUR", max_click_minor=7, max_day_minor=300)
    assert world.wallet.limits_sync_error is None
    assert broker_limits(world) == SpendingLimits("EUR", 7, 300)
    # With the broker down the wallet's own limits still change, and it says why not there.
    world.stop_broker()
    world.wallet.set_spending_limits("EUR", max_click_minor=9)
    assert world.wallet.limits_sync_error is not None
    assert shortcuts(world.wallet).spending_limits("EUR") == SpendingLimits("EUR", 9, 300)
    world.restart_broker()


def test_limits_set_on_the_portal_reach_the_wallet_at_login(world: World) -> None:
    world.wallet.buy(200)
    with world.broker.services.store.begin(read_only=True) as repos:
        row = repos.readers.by_username("ann")
        assert row is not None
        reader_id = row.reader_id
    world.broker.services.set_spending_limits(reader_id, SpendingLimits("EUR", 3, None))
    fresh = world.new_wallet()
    fresh.login(None, "ann", PASSWORD)
    assert shortcuts(fresh).spending_limits("EUR") == SpendingLimits("EUR", 3, None)
    with pytest.raises(LimitExceeded):
        fresh.read(world.article(5))  # 5 cents > 3 per click
    world.broker.services.set_spending_limits(reader_id, SpendingLimits("EUR", 10, None))
    assert fresh.sync_spending_limits() == [SpendingLimits("EUR", 10, None)]
    assert fresh.read(world.article(5)).status == 200
