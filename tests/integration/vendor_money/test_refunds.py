"""Refunds for returned goods end to end: a real vendor records a signed
VendorRefund for a paid click, its next redemption batch nets it at a real
broker (vendor payable -> the reader's refund balance) and the books balance."""

from __future__ import annotations

import pytest

from netpay.envelope import open_envelope, seal
from netpay.errors import AlreadyExists, InvalidArgument, NotFound, PreconditionFailed
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.dbs import BACKENDS, fresh_db_url
from vendor.broker_client import GrpcBrokerClient
from vendor.services.redeem import Redeemer
from vendor.services.refunds import RefundRecord

from .conftest import books, click, close, handle_of, money, open_window, pay


def refund(vendor, ecoin: str, to_index: int, amount: int, **kw: str) -> RefundRecord:
    return vendor.redeemer.refund(
        ecoin_id=ecoin,
        receipt_to_index=to_index,
        amount_minor=amount,
        reason=kw.pop("reason", "returned"),
        **kw,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_refund_after_redemption_is_netted_by_the_next_batch(
    backend, start, broker, reader, clock, tmp_path
) -> None:
    v1 = start("daily-hash", db_url=fresh_db_url(backend, tmp_path, "vendor"))
    chain = reader.buy(200)
    ecoin = chain.ecoin_id.hex()
    ten = pay(v1, chain, 0, "7")  # (0, 10]: 10 cents
    pay(v1, chain, ten, "4")  # (10, 15]
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    assert money(broker, "daily-hash") == {"bank": 15, "payable": 0, "reader_refund": 0}

    clock.advance(1)
    record = refund(v1, ecoin, ten, 4, reason="article withdrawn")
    assert (record.status, record.created, record.currency, record.item_id) == (
        "pending",
        True,
        "EUR",
        "7",
    )
    signed = open_envelope(
        pb.Envelope.FromString(record.envelope),
        pb.VendorRefund,
        v1.services._ports.identity.key.public_key,
    )
    assert (signed.vendor_id, signed.ecoin_id, signed.receipt_to_index, signed.amount_minor) == (
        "daily-hash",
        ecoin,
        10,
        4,
    )

    clock.advance(1)
    report = v1.redeemer.redeem()
    summary = report.as_json()
    assert summary["refunds"] == {"accepted": 1, "rejected": 0}
    assert summary["refunds_waiting"] == 0
    [batch] = report.batches
    assert (batch.claims, batch.refunds, batch.refunds_accepted) == (0, 1, 1)
    assert report.paid_minor == {"EUR": -4} and report.refunded_minor == {"EUR": 4}
    # The vendor was paid already: it now owes the broker 4, netted from its next payout.
    assert money(broker, "daily-hash") == {"bank": 15, "payable": -4, "reader_refund": 4}
    assert [r.status for r in v1.redeemer.refunds()] == ["accepted"]
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced
    assert report.refunded_cents == {"EUR": 4} and report.redeemed_cents == {"EUR": 11}
    # The reader's history at the broker lists it.
    [line] = [
        h
        for h in broker.services.history(reader_id=_owner(broker, ecoin))
        if h.kind == "vendor_refund"
    ]
    assert (line.vendor_id, line.to_index, line.amount_minor) == ("daily-hash", 10, 4)

    clock.advance(1)
    pay(v1, chain, 15, "7")  # (15, 25]
    assert v1.redeemer.redeem().paid_minor == {"EUR": 10}
    assert money(broker, "daily-hash") == {"bank": 21, "payable": 0, "reader_refund": 4}
    assert v1.redeemer.redeem().batches == []  # nothing left: no empty batch
    # Newest first: a refund is listed when it was recorded, below the batch that netted it.
    rows = v1.redeemer.history(limit=100)
    assert [(r["kind"], r["status"], r["amount_minor"], r["claims"]) for r in rows] == [
        ("batch", "done", None, 1),
        ("claim", "accepted", 10, None),
        ("batch", "done", None, 0),
        ("refund", "accepted", -4, None),
        ("batch", "done", None, 1),
        ("claim", "accepted", 15, None),
    ]
    assert rows[3]["batch_id"] == rows[2]["batch_id"] and rows[2]["refunds"] == 1
    assert [r["kind"] for r in v1.redeemer.history(limit=2)] == ["batch", "claim"]
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced
    assert report.vendor_paid_cents == {"EUR": 21}


def test_a_refund_before_redemption_goes_with_its_claim_in_one_batch(
    start, broker, reader, clock
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(200)
    ecoin = chain.ecoin_id.hex()
    ten = pay(v1, chain, 0, "7")
    fifteen = pay(v1, chain, ten, "4")
    refund(v1, ecoin, fifteen, 5, reason="wrong article")
    refund(v1, ecoin, ten, 2, reason="late delivery")

    report = v1.redeemer.redeem()
    [batch] = report.batches
    assert (batch.claims, batch.accepted, batch.refunds, batch.refunds_accepted) == (1, 1, 2, 2)
    assert report.paid_minor == {"EUR": 15 - 7}
    assert money(broker, "daily-hash") == {"bank": 8, "payable": 0, "reader_refund": 7}
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced


def test_a_refund_of_a_window_click_waits_until_the_window_is_claimed(
    start, broker, reader, clock
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(300)
    ecoin = chain.ecoin_id.hex()
    opened = open_window(v1.web_url, chain, 0, 40)
    assert opened.status_code == 200, opened.text
    handle = handle_of(opened)
    assert click(v1.web_url, "7", handle).status_code == 200  # window click (0, 10]
    assert click(v1.web_url, "4", handle).status_code == 200  # (10, 15]
    refund(v1, ecoin, 10, 10, reason="duplicate purchase")

    waiting = v1.redeemer.redeem()  # the window is open: nothing can be claimed yet
    assert waiting.batches == [] and waiting.as_json()["refunds_waiting"] == 1
    assert [r.status for r in v1.redeemer.refunds()] == ["pending"]

    assert close(v1.web_url, handle).status_code == 200  # 25 words go back to the reader
    report = v1.redeemer.redeem()
    [batch] = report.batches
    assert (batch.claims, batch.refunds_accepted) == (1, 1)
    assert report.paid_minor == {"EUR": 5}
    assert money(broker, "daily-hash") == {"bank": 5, "payable": 0, "reader_refund": 35}
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced


def test_over_refunds_and_unknown_receipts_are_refused(start, broker, reader, clock) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(100)
    ecoin = chain.ecoin_id.hex()
    ten = pay(v1, chain, 0, "7")

    with pytest.raises(InvalidArgument, match="at most 10"):
        refund(v1, ecoin, ten, 11)
    refund(v1, ecoin, ten, 6)
    with pytest.raises(InvalidArgument, match="at most 4"):
        refund(v1, ecoin, ten, 5)
    refund(v1, ecoin, ten, 4)
    with pytest.raises(InvalidArgument, match="at most 0"):
        refund(v1, ecoin, ten, 1)
    with pytest.raises(NotFound):
        refund(v1, ecoin, 7, 1)  # no receipt ends at 7
    with pytest.raises(NotFound):
        refund(v1, "ab" * 16, ten, 1)
    for bad in (
        {"refund_id": "no spaces"},
        {"refund_id": "x" * 65},
        {"reason": ""},
        {"reason": "x" * 201},
    ):
        with pytest.raises(InvalidArgument):
            refund(v1, ecoin, ten, 1, **bad)
    with pytest.raises(InvalidArgument):
        refund(v1, ecoin, ten, 0)
    with pytest.raises(InvalidArgument):
        refund(v1, "not-a-coin", ten, 1)

    report = v1.redeemer.redeem()
    assert report.as_json()["refunds"] == {"accepted": 2, "rejected": 0}
    assert money(broker, "daily-hash") == {"bank": 0, "payable": 0, "reader_refund": 10}
    assert books(broker, clock).conservation_cents == {"EUR": 0}


def test_the_same_refund_id_twice_is_netted_once(start, broker, reader, clock, tmp_path) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(100)
    ecoin = chain.ecoin_id.hex()
    ten = pay(v1, chain, 0, "7")
    first = refund(v1, ecoin, ten, 3, refund_id="order-42", reason="torn page")
    again = refund(v1, ecoin, ten, 3, refund_id="order-42", reason="torn page")
    assert (first.created, again.created) == (True, False)
    assert again.envelope == first.envelope
    with pytest.raises(AlreadyExists):
        refund(v1, ecoin, ten, 2, refund_id="order-42", reason="torn page")
    assert len(v1.redeemer.refunds()) == 1

    # The batch is stored, sent twice (a lost reply), then again by the next run.
    built = v1.redeemer._build_batch()
    assert built is not None
    _, request = built
    assert len(request.vendor_refunds) == 1
    client = GrpcBrokerClient(broker.grpc_address, token=_token(tmp_path / "daily-hash"))
    try:
        assert client.redeem(request) == client.redeem(request)
        # The same refund in another batch is answered accepted, and not netted again;
        # another refund under the same id is refused.
        same = client.redeem(
            bpb.RedeemRequest(batch_id="same-refund", vendor_refunds=request.vendor_refunds)
        )
        twin = pb.VendorRefund.FromString(request.vendor_refunds[0].payload)
        twin.amount_minor = 2
        other = client.redeem(
            bpb.RedeemRequest(
                batch_id="other-refund",
                vendor_refunds=[seal(twin, v1.services._ports.identity.key)],
            )
        )
    finally:
        client.close()
    assert [a.status for a in same.refunds] == [bpb.CLAIM_STATUS_ACCEPTED]
    assert [(a.status, a.reason) for a in other.refunds] == [
        (bpb.CLAIM_STATUS_REJECTED, "already_exists")
    ]
    report = v1.redeemer.redeem()
    assert [b.retried for b in report.batches] == [True]
    assert report.as_json()["refunds"] == {"accepted": 1, "rejected": 0}
    assert refund(v1, ecoin, ten, 3, refund_id="order-42", reason="torn page").status == (
        "accepted"
    )
    assert money(broker, "daily-hash") == {"bank": 7, "payable": 0, "reader_refund": 3}
    assert books(broker, clock).conservation_cents == {"EUR": 0}


class ScriptedBroker:
    """A RedeemClient that answers every claim and refund as told (a fake broker)."""

    def __init__(self, claim_reason: str, refund_reason: str) -> None:
        self.claim_reason = claim_reason
        self.refund_reason = refund_reason
        self.requests: list[bpb.RedeemRequest] = []

    def redeem(self, request: bpb.RedeemRequest) -> bpb.RedeemResponse:
        self.requests.append(request)
        results = []
        for env in request.claims:
            claim = pb.Claim.FromString(env.payload)
            results.append(
                bpb.ClaimResult(
                    ecoin_id=claim.ecoin_id,
                    epoch=claim.epoch,
                    to_index=claim.to_index,
                    status=bpb.CLAIM_STATUS_REJECTED,
                    reason=self.claim_reason,
                    detail="scripted",
                )
            )
        refunds = [
            bpb.RefundResult(
                refund_id=pb.VendorRefund.FromString(env.payload).refund_id,
                status=bpb.CLAIM_STATUS_REJECTED,
                reason=self.refund_reason,
                detail="no redeemed receipt",
            )
            for env in request.vendor_refunds
        ]
        return bpb.RedeemResponse(batch_id=request.batch_id, results=results, refunds=refunds)


def test_a_refund_waits_when_its_claim_goes_again_and_is_dropped_when_it_is_refused(
    start, reader, clock
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(100)
    ecoin = chain.ecoin_id.hex()
    ten = pay(v1, chain, 0, "7")
    refund(v1, ecoin, ten, 3)

    def redeemer(fake: ScriptedBroker) -> Redeemer:
        return Redeemer(
            uow=v1.services._ports.uow,
            identity=v1.services._ports.identity,
            broker=fake,
            clock=clock,
        )

    busy = ScriptedBroker("limit_exceeded", "failed_precondition")
    report = redeemer(busy).redeem()
    assert report.as_json()["refunds"] == {"accepted": 0, "rejected": 0}
    assert report.refunds_waiting == 1  # its claim is made again later: it waits for it
    assert [r.status for r in v1.redeemer.refunds()] == ["pending"]

    refused = ScriptedBroker("bad_payword", "failed_precondition")
    report = redeemer(refused).redeem()
    [sent] = refused.requests
    assert (len(sent.claims), len(sent.vendor_refunds)) == (1, 1)
    assert report.as_json()["refunds"] == {"accepted": 0, "rejected": 1}
    [stored] = v1.redeemer.refunds()
    assert (stored.status, stored.result_reason) == ("rejected", "failed_precondition")
    # A click whose claim was refused cannot be refunded any more (nothing was paid).
    with pytest.raises(PreconditionFailed):
        refund(v1, ecoin, ten, 1)
    assert redeemer(refused).redeem().batches == []


def test_a_refund_recorded_while_its_claim_is_in_flight_is_dropped_if_the_claim_is_refused(
    start, reader, clock
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(100)
    ecoin = chain.ecoin_id.hex()
    ten = pay(v1, chain, 0, "7")
    refused = ScriptedBroker("already_spent", "failed_precondition")
    fake = Redeemer(
        uow=v1.services._ports.uow,
        identity=v1.services._ports.identity,
        broker=refused,
        clock=clock,
    )
    assert fake._build_batch() is not None  # stored, not answered yet
    refund(v1, ecoin, ten, 3)  # the claim is in flight: the refund may wait for it

    report = fake.redeem()  # the stored batch goes again: its claim is refused
    assert [len(r.vendor_refunds) for r in refused.requests] == [0]
    assert report.refunds_dropped == 1
    assert report.as_json()["refunds"] == {"accepted": 0, "rejected": 1}
    [stored] = v1.redeemer.refunds()
    assert (stored.status, stored.result_reason) == ("rejected", "claim_rejected")
    assert "already_spent" in (stored.result_detail or "")


def _token(data_dir) -> str:
    from netpay.files import read_json

    return str(read_json(data_dir / "vendor.json")["vendor_token"])


def _owner(broker, ecoin_id: str) -> str:
    with broker.services.store.begin(read_only=True) as repos:
        stored = repos.coins.get(ecoin_id)
        assert stored is not None
        return stored.owner
