"""The reader's spending limits on a server-side wallet: set at the broker (gRPC and
the portal), the click limit applied by the vendor from the WalletGrant, the daily
limit by the broker at DrawWindow."""

from __future__ import annotations

import grpc
import pytest

from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2 as bpb

from .conftest import World


def set_limits(world: World, **fields: int) -> bpb.GetAccountResponse:
    return world.stub.SetSpendingLimits(
        bpb.SetSpendingLimitsRequest(limit=bpb.SpendingLimit(currency="EUR", **fields)),
        metadata=bearer_metadata(world.reader_token),
        timeout=10,
    )


def test_limits_are_set_and_shown_over_grpc(world: World) -> None:
    account = set_limits(world, max_click_minor=10, max_day_minor=60)
    [eur] = account.limits
    assert (eur.max_click_minor, eur.max_day_minor, eur.spent_today_minor) == (10, 60, 0)
    cleared = set_limits(world)
    assert not cleared.limits[0].HasField("max_click_minor")
    for bad in ({"max_click_minor": -1}, {"max_day_minor": 10_000_001}):
        with pytest.raises(grpc.RpcError) as info:
            set_limits(world, **bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        world.stub.SetSpendingLimits(
            bpb.SetSpendingLimitsRequest(limit=bpb.SpendingLimit(currency="JPY")),
            metadata=bearer_metadata(world.reader_token),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_click_and_day_limits_hold_at_the_newspaper(world: World) -> None:
    set_limits(world, max_click_minor=10, max_day_minor=60)
    coin = world.buy(n=500)
    v1 = world.start_vendor("v1", "127.0.0.2")
    browser = world.browser()
    browser.sign_in(v1, coin.ecoin_id)

    dear = browser.read(v1, "8", Accept="application/json")  # 12 cents > 10 per click
    assert dear.status_code == 402 and dear.json()["error"] == "limit_exceeded"
    # 36 cents from the first window (50 words drawn: 50 of the 60-cent day).
    for article in ("7", "6", "5", "4", "3", "2", "1"):
        paid = browser.read(v1, article, Accept="application/json")
        assert paid.status_code == 200, paid.text
    world.clock.advance(601)  # past retry_ttl_s: the same articles are new clicks again
    assert browser.read(v1, "7", Accept="application/json").status_code == 200  # 46 of 50
    # A new 50-word window would pass the day: the vendor draws the price only (8).
    assert browser.read(v1, "6", Accept="application/json").status_code == 200
    refused = browser.read(v1, "5", Accept="application/json")  # 58 + 7 > 60
    assert refused.status_code == 402 and refused.json()["error"] == "limit_exceeded"
    account = world.stub.GetAccount(
        bpb.GetAccountRequest(), metadata=bearer_metadata(world.reader_token), timeout=10
    )
    assert account.limits[0].spent_today_minor == 58
    # The next UTC day (signed in again: a sign-in lasts at most 12 hours) the
    # reader can read again.
    world.clock.advance(86_400)
    v1.services.checkpoint_all()
    browser.sign_in(v1, coin.ecoin_id)
    again = browser.read(v1, "4", Accept="application/json")
    assert again.status_code == 200, again.text
