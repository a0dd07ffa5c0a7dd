"""Forced acquisition (RECALLING) end to end with real vendors: the holder cannot be
reached for the hand-off, the next vendor recalls the coin; the exposure bound and
its settlement at redemption (both honest vendors paid, the loss booked, the reader
flagged until it is paid back)."""

from __future__ import annotations

import requests

from broker.domain import AccountRef, CoinState
from vendor.domain import VendorCoinState

from .conftest import balance, books, reader_id, send


def cut_off(vendor) -> None:
    """The vendor's gRPC service goes away (other vendors cannot reach it); its web
    site and its own calls to the broker still work."""
    vendor._grpc_server.stop(grace_s=0)


def recall_after_unreported_clicks(v1, v2, chain) -> requests.Response:
    """``v1`` sells (0, 5] (checkpointed) and (5, 15] (not reported yet), then cannot
    be reached; a cheating wallet replays (5, 15] at ``v2``, whose hand-off fails: it
    recalls the coin. Returns ``v2``'s answer."""
    assert send(v1, chain, 0, "4").status_code == 200
    v1.services.checkpoint_all()  # the broker knows word 5
    assert send(v1, chain, 5, "7").status_code == 200  # (5, 15] not reported yet
    cut_off(v1)
    return send(v2, chain, 5, "7")


def test_a_silent_holder_is_recalled_and_a_re_spend_is_paid_from_broker_losses(
    start, broker, reader, clock
) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    chain = reader.buy(300)
    busy = recall_after_unreported_clicks(v1, v2, chain)
    assert busy.status_code == 409 and busy.json()["error"] == "coin_busy"
    status = broker.services.get_coin(chain.ecoin_id.hex(), vendor_id="x")
    assert status.state is CoinState.RECALLING
    clock.advance(v1.services.limits.lease_ttl_s + v1.services.limits.max_skew_s + 1)
    again = send(v2, chain, 5, "7")  # the deadline passed: epoch 1 is force-closed
    assert again.status_code == 200, again.text
    assert send(v2, chain, 15, "1").status_code == 200
    # The Daily Hash learns it at its next checkpoint and stops.
    v1.services.checkpoint_all()
    assert v1.services.coin(chain.ecoin_id.hex()).view.state is VendorCoinState.CLOSED

    # Both honest vendors are paid in full; the 10 re-spent cents come from broker losses.
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    assert v2.redeemer.redeem().paid_minor == {"EUR": 11}
    assert balance(broker, AccountRef.broker_loss("EUR")) == -10
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced
    assert report.broker_losses_cents == {"EUR": 10}
    [dispute] = report.disputes
    assert (dispute["vendor_id"], dispute["from_index"], dispute["to_index"]) == (
        "chain-gazette",
        5,
        16,
    )

    # The flagged reader's next purchase first pays the loss back.
    before = balance(broker, AccountRef.reader(reader_id(broker), "EUR"))
    reader.buy(50)
    assert balance(broker, AccountRef.reader(reader_id(broker), "EUR")) == before - 10 - 50
    assert balance(broker, AccountRef.broker_loss("EUR")) == 0
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.broker_losses_cents == {"EUR": 0}


def test_a_holder_that_hears_the_recall_sends_its_final_index(start, broker, reader, clock) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    chain = reader.buy(300)
    assert send(v1, chain, 0, "4").status_code == 200
    assert send(v1, chain, 5, "7").status_code == 200
    cut_off(v1)
    busy = send(v2, chain, 15, "1")
    assert busy.status_code == 409  # the recall has begun
    # The Daily Hash still reaches the broker: its checkpoint hears the recall, it
    # stops accepting and sends its final index, which closes its epoch at 15.
    v1.services.checkpoint_all()
    stored = v1.services.coin(chain.ecoin_id.hex())
    assert stored.view.state is VendorCoinState.CLOSED
    assert send(v1, chain, 15, "4").status_code in (402, 409)  # nothing more there
    paid = send(v2, chain, 15, "1")  # the Gazette holds epoch 2 from 15
    assert paid.status_code == 200, paid.text
    with broker.services.store.begin(read_only=True) as repos:
        first, second = repos.coins.epochs(chain.ecoin_id.hex())
    assert (first.end.index if first.end else None, second.base.index) == (15, 15)

    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    assert v2.redeemer.redeem().paid_minor == {"EUR": 1}
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced
    assert report.disputes == [] and report.broker_losses_cents == {"EUR": 0}
