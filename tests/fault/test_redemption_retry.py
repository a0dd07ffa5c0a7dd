"""A redemption batch retried 100 times is paid once (protocol.md, "Redemption":
``Broker.Redeem`` is idempotent by ``(vendor, batch id)``).

Several coins at both vendors (clicks, hand-offs both ways, void words, a window
closed by a hand-off and one closed by the wallet). Each vendor runs its daily
redemption while the broker is down: the batch is built and stored *before*
it is sent, so it stays pending. The broker comes back; the stored request is
sent 100 times (sequentially and from 8 threads at once, as retries after
lost replies would be): every reply is the same, byte for byte, and the
vendor's bank account moves once. The same batch id with other contents is
refused. The vendor's next run sends the pending batch once more (the stored
reply again) and finds nothing new. The books balance and every account
equals the model's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from broker.domain import AccountRef
from netpay.errors import AlreadyExists
from netpay.v1 import broker_pb2 as bpb
from tests.fault.conftest import World, await_broker
from vendor.broker_client import GrpcBrokerClient
from vendor.server import VendorHandle
from vendor.storage import RedemptionBatchRow

SENDS = 100
CONCURRENT = 60  # of the SENDS, sent from 8 threads at once


def pending_batch(vendor: VendorHandle) -> bpb.RedeemRequest:
    """The one batch the vendor stored and could not send (read from its database)."""
    with vendor.services._ports.uow(read_only=True) as unit:
        [request] = unit.session.scalars(
            select(RedemptionBatchRow.request).where(RedemptionBatchRow.state == "pending")
        ).all()
    return bpb.RedeemRequest.FromString(request)


def bank(world: World, vendor_id: str) -> int:
    with world.broker.services.store.begin(read_only=True) as repos:
        return repos.ledger.balance_minor(AccountRef.vendor_bank(vendor_id, "EUR"))


def test_a_batch_sent_100_times_is_paid_once(any_world: World) -> None:
    world = any_world
    v1 = world.start_vendor("daily-hash")
    v2 = world.start_vendor("chain-gazette")
    p = world.reader.buy(300)
    q = world.reader.buy(300)
    r = world.reader.buy(300)
    # p: v1, hand-off to v2, back to v1; a void gap on the way.
    i = world.pay(v1, p, 0, "4")
    i = world.pay(v1, p, i, "7")
    i = world.pay(v2, p, i, "5")
    i = world.pay(v2, p, i + 3, "2")  # 3 void words (a header never used)
    world.pay(v1, p, i, "1")
    # q: a window at v1, clicked, closed by the hand-off to v2.
    handle, window = world.open_window(v1, q, 0, 60)
    for article in ("3", "8", "1"):
        assert world.click(v1, handle, article).status_code == 200
    j = world.pay(v2, q, 60, "9")
    [closed] = v1.services.windows(q.ecoin_id.hex())
    assert closed.credit is not None
    world.model.window_closed(window, world.credit_of_bytes(closed.credit, "daily-hash"))
    world.pay(v2, q, j, "6")
    # r: a window at v2 the wallet closes, then clicks at v2.
    handle_r, window_r = world.open_window(v2, r, 0, 40)
    assert world.click(v2, handle_r, "10").status_code == 200
    world.close_window(v2, handle_r, window_r)
    world.pay(v2, r, 40, "12")

    # The daily run while the broker is down: each batch is stored, then stays pending.
    world.stop_broker()
    for v in (v1, v2):
        report = v.redeemer.redeem()
        assert report.pending == 1 and report.batches == [], report.as_json()
    world.restart_broker()

    for v in (v1, v2):
        await_broker(v)
        send_100_times(world, v)
        assert bank(world, v.vendor_id) == world.model.redeemable_minor(v.vendor_id)
        # The vendor's next run sends its pending batch once more: the same reply.
        report = world.redeem(v)
        assert [b.retried for b in report.batches] == [True], report.as_json()

    assert world.model.redeemable_minor("daily-hash") == 0
    assert world.model.void_units(p.ecoin_id.hex()) == 3
    world.finish(v1, v2)  # nothing left: a further run sends nothing


def send_100_times(world: World, vendor: VendorHandle) -> None:
    request = pending_batch(vendor)
    assert request.claims
    client = GrpcBrokerClient(world.broker.grpc_address, token=world.vendor_token(vendor.vendor_id))
    try:
        replies = [client.redeem(request).SerializeToString() for _ in range(SENDS - CONCURRENT)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies += [
                r.SerializeToString() for r in pool.map(client.redeem, [request] * CONCURRENT)
            ]
        assert len(replies) == SENDS and len(set(replies)) == 1
        reply = bpb.RedeemResponse.FromString(replies[0])
        assert reply.batch_id == request.batch_id
        assert all(c.status == bpb.CLAIM_STATUS_ACCEPTED for c in reply.results), reply
        paid = {b.currency: b.balance_minor for b in reply.paid}
        assert paid.get("EUR", 0) == world.model.redeemable_minor(vendor.vendor_id)
        # The same batch id with other contents is refused, and pays nothing.
        other = bpb.RedeemRequest(batch_id=request.batch_id, claims=request.claims[:-1])
        with pytest.raises(AlreadyExists):
            client.redeem(other)
    finally:
        client.close()
