"""The broker goes down and comes back (protocol.md, "Coin custody", step 4).

A vendor accepts a payword only while it holds the coin's epoch with a live
lease; paying at the holder needs no broker call. So while the broker is
down, coins held with a live lease keep paying (clicks and window clicks); a
payment that needs the broker (an acquisition, a hand-off, a lapsed lease)
is refused with 503 ``broker_unavailable`` and accepts nothing. The broker
then restarts on the same data dir and address: the refused header pays
(the hand-off completes), leases renew, everything redeems, the books
balance and agree with the model ledger.
"""

from __future__ import annotations

import requests

from netpay.limits import DEFAULT_LIMITS
from tests.fault.conftest import JSON, PRICES, World, await_broker, error_code, pay_header


def test_held_coins_pay_within_the_lease_while_the_broker_is_down(world: World) -> None:
    v1 = world.start_vendor("daily-hash")
    v2 = world.start_vendor("chain-gazette")
    a = world.reader.buy(300)  # held at v1: keeps paying while the broker is down
    b = world.reader.buy(300)  # held at v1: the reader moves to v2 while the broker is down
    c = world.reader.buy(300)  # held at v2
    d = world.reader.buy(300)  # a window at v1
    e = world.reader.buy(300)  # never held: its first payment needs the broker
    f = world.reader.buy(300)  # held at v1: runs into max_unreported_units
    ia = world.pay(v1, a, 0, "4")
    ib = world.pay(v1, b, 0, "1")
    ic = world.pay(v2, c, 0, "2")
    i_f = world.pay(v1, f, 0, "1")
    handle, window = world.open_window(v1, d, 0, 100)
    assert world.click(v1, handle, "3").status_code == 200

    world.stop_broker()

    # Within the lease: held coins pay with no broker call, clicks and window clicks.
    for article in ("1", "2", "7", "4"):
        ia = world.pay(v1, a, ia, article)
    ic = world.pay(v2, c, ic, "5")
    assert world.click(v1, handle, "7").status_code == 200
    # At most max_unreported_units past the last acknowledged word (the epoch's base,
    # 0): the click that would pass it needs a synchronous checkpoint first.
    while i_f + PRICES["12"] <= DEFAULT_LIMITS.max_unreported_units:
        i_f = world.pay(v1, f, i_f, "12")
    unreported = world.send(v1, f, i_f, "12")
    assert (unreported.status_code, error_code(unreported)) == (503, "broker_unavailable")
    # A hand-off needs the broker: 503 broker_unavailable, nothing accepted.
    moved = world.send(v2, b, ib, "2")
    assert (moved.status_code, error_code(moved)) == (503, "broker_unavailable"), moved.text
    assert v2.services.coin(b.ecoin_id.hex()) is None
    held = v1.services.coin(b.ecoin_id.hex())
    assert held is not None and held.view.index == ib  # v1 kept it, unmoved
    # So does a first acquisition.
    first = world.send(v1, e, 0, "1")
    assert (first.status_code, error_code(first)) == (503, "broker_unavailable"), first.text
    assert v1.services.coin(e.ecoin_id.hex()) is None

    # The lease lapses (deadline: sent + lease_ttl_s - max_skew_s): payments stop.
    world.advance(DEFAULT_LIMITS.lease_ttl_s)
    lapsed = world.send(v1, a, ia, "1")
    assert (lapsed.status_code, error_code(lapsed)) == (503, "broker_unavailable"), lapsed.text
    wclick = world.click(v1, handle, "1")
    assert (wclick.status_code, error_code(wclick)) == (503, "broker_unavailable"), wclick.text
    lapsed_c = world.send(v2, c, ic, "3")
    assert lapsed_c.status_code == 503, lapsed_c.text
    a_coin = v1.services.coin(a.ecoin_id.hex())
    assert a_coin is not None and a_coin.view.index == ia  # nothing accepted

    world.restart_broker()
    for v in (v1, v2):
        await_broker(v)

    # The refused header of coin b is sent again: the hand-off completes, it pays.
    again = requests.get(
        f"{v2.web_url}/articles/2",
        headers={**JSON, "Authorization": pay_header(b, ib, ib + 2)},
        timeout=30,
    )
    receipt = world.record(again, "chain-gazette")
    assert (receipt.from_index, receipt.to_index, receipt.epoch) == (ib, ib + 2, 2)
    # Leases renew on the next payment. The lapsed header of coin a was never used:
    # the wallet moved on, so its word is void (it stays in the float).
    ia = world.pay(v1, a, ia + PRICES["1"], "2")
    ic = world.pay(v2, c, ic + PRICES["3"], "1")
    assert world.click(v1, handle, "1").status_code == 200
    # The first payment of coin e, refused while the broker was down, is sent again.
    world.record(
        requests.get(
            f"{v1.web_url}/articles/1",
            headers={**JSON, "Authorization": pay_header(e, 0, 1)},
            timeout=30,
        ),
        "daily-hash",
    )
    # So does the click that needed a checkpoint.
    world.record(
        requests.get(
            f"{v1.web_url}/articles/12",
            headers={**JSON, "Authorization": pay_header(f, i_f, i_f + PRICES["12"])},
            timeout=30,
        ),
        "daily-hash",
    )
    world.close_window(v1, handle, window)

    assert world.model.void_units(a.ecoin_id.hex()) == PRICES["1"]
    assert world.model.void_units(c.ecoin_id.hex()) == PRICES["3"]
    world.finish(v1, v2)
