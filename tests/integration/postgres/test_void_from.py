"""Receipts carry ``void_from`` (protocol revision 1.1, change 9): the vendor signs
its index before each payment into the Receipt, its claims list every Receipt as
``(void_from, prev, to)``, the broker pays only ``(prev, to]``, refuses a claim over
a Receipt's void words and keeps it as a dispute, and the void words go back to the
reader at expiry. Real broker and vendors on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select, update

from broker.domain import AccountRef
from broker.storage.tables import ClaimRow, DisputeRow
from netpay.envelope import open_envelope, seal
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.integration.redemption.conftest import balance, books, reader_id, send
from tests.integration.vendor_windows.conftest import click, close, handle_of, open_window
from tests.integration.vendor_windows.conftest import receipt as receipt_of
from vendor.broker_client import GrpcBrokerClient
from vendor.storage.tables import ClickRow

from .conftest import vendor_token
from .test_never_wedges import signed_claim

DAY_S = 86_400
Tile = tuple[int | None, int, int]


def claimed_tiles(broker_handle, ecoin_id: str) -> list[list[Tile]]:
    """The (void_from, prev, to) of each Receipt of each claim the broker accepted."""
    with broker_handle.services.store.begin(read_only=True) as repos:
        blobs = repos.session.scalars(
            select(ClaimRow.claim).where(ClaimRow.ecoin_id == ecoin_id).order_by(ClaimRow.id)
        ).all()
    claims = [pb.Claim.FromString(pb.Envelope.FromString(b).payload) for b in blobs]
    return [
        [
            (r.void_from if r.HasField("void_from") else None, r.from_index, r.to_index)
            for r in c.ranges
        ]
        for c in claims
    ]


def test_void_words_are_signed_claimed_as_void_paid_to_nobody_and_refunded_at_expiry(
    start, broker, reader, clock
) -> None:
    v1 = start("daily-hash")
    key = v1.services._ports.identity.key.public_key
    chain = reader.buy(100)
    ecoin = chain.ecoin_id.hex()
    paid = [send(v1, chain, 0, "4"), send(v1, chain, 8, "7")]  # (0, 5]; (5, 8] void, (8, 18]
    opened = open_window(v1.web_url, chain, 20, 30)  # (20, 50]: (18, 20] void
    assert opened.status_code == 200, opened.text
    handle = handle_of(opened)
    paid += [click(v1.web_url, "4", handle), click(v1.web_url, "1", handle)]  # (20, 26]
    assert close(v1.web_url, handle).status_code == 200  # (26, 50] back to the reader
    paid.append(send(v1, chain, 60, "1"))  # (50, 60] void, (60, 61]
    assert [r.status_code for r in paid] == [200] * 5
    receipts = [receipt_of(r, key) for r in paid]
    assert [(r.void_from, r.from_index, r.to_index) for r in receipts] == [
        (0, 0, 5),
        (5, 8, 18),
        (18, 20, 25),  # the window's first click: the words its opening skipped
        (25, 25, 26),
        (50, 60, 61),
    ]
    assert all(r.HasField("void_from") for r in receipts)

    assert v1.redeemer.redeem().paid_minor == {"EUR": 5 + 10 + 5 + 1 + 1}
    assert claimed_tiles(broker, ecoin) == [
        [(0, 0, 5), (5, 8, 18), (18, 20, 25), (25, 25, 26), (50, 60, 61)]
    ]
    me = reader_id(broker)
    assert balance(broker, AccountRef.reader_refund(me, "EUR")) == 24
    assert books(broker, clock).conservation_cents == {"EUR": 0}

    bank_before = balance(broker, AccountRef.reader(me, "EUR"))
    clock.advance(97 * DAY_S)  # expiry + the redemption grace period
    [refund] = broker.services.refund_expired()
    # 100 - 22 paid - 24 netted = 54: 39 unspent and the 15 void words (3 + 2 + 10).
    assert (refund.amount_minor, refund.refund_balance_minor) == (54, 24)
    assert balance(broker, AccountRef.reader(me, "EUR")) == bank_before + 54 + 24
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced
    assert report.outstanding_cents == {"EUR": 0} and report.disputes == []


def test_a_claim_over_a_receipts_void_words_is_refused_and_kept_as_a_dispute(
    start, broker, reader, clock, tmp_path
) -> None:
    """The dishonest newspaper is a real enrolled vendor (its own key and token): it
    lists a Receipt it never issued over the void words of one it did."""
    v1 = start("daily-hash")
    chain = reader.buy(100)
    assert send(v1, chain, 0, "4").status_code == 200  # (0, 5]
    assert send(v1, chain, 8, "7").status_code == 200  # (5, 8] void, (8, 18]
    over_void = signed_claim(v1, chain, 1, [(0, 0, 5), (5, 5, 8), (5, 8, 18)])
    # A Receipt that says the index stood at 6 while the tile before it ends at 5.
    untiled = signed_claim(v1, chain, 1, [(0, 0, 5), (6, 8, 18)])
    client = GrpcBrokerClient(broker.grpc_address, token=vendor_token(tmp_path / "daily-hash"))
    try:
        reply = client.redeem(bpb.RedeemRequest(batch_id="over-void", claims=[over_void, untiled]))
    finally:
        client.close()
    assert [(r.status, r.reason) for r in reply.results] == [
        (bpb.CLAIM_STATUS_REJECTED, "already_spent"),
        (bpb.CLAIM_STATUS_REJECTED, "invalid_argument"),
    ]
    assert "void words" in reply.results[0].detail and "(5, 6]" in reply.results[1].detail
    assert balance(broker, AccountRef.vendor_bank("daily-hash", "EUR")) == 0
    [dispute] = books(broker, clock).disputes
    assert (dispute["vendor_id"], dispute["from_index"], dispute["to_index"]) == (
        "daily-hash",
        0,
        18,
    )
    with broker.services.store.begin(read_only=True) as repos:
        [evidence] = repos.session.scalars(select(DisputeRow.claim)).all()
    assert pb.Envelope.FromString(evidence) == over_void  # the signed claim itself

    # The honest claim of the same Receipts is paid: (0, 5] and (8, 18].
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced


def test_a_receipt_signed_before_void_from_existed_is_claimed_without_it(
    start, broker, reader, clock
) -> None:
    """A click of an existing data dir has a Receipt without void_from: the claim
    lists it without one, and the broker reads it as prev (the words before it are
    void, as in 1.0)."""
    v1 = start("daily-hash")
    chain = reader.buy(100)
    ecoin = chain.ecoin_id.hex()
    assert send(v1, chain, 0, "4").status_code == 200  # (0, 5]
    assert send(v1, chain, 8, "7").status_code == 200  # (8, 18]
    identity = v1.services._ports.identity
    with v1.services._ports.uow() as unit:  # the second Receipt as 1.0 signed it
        stored = unit.session.scalars(
            select(ClickRow.receipt).where(ClickRow.ecoin_id == ecoin, ClickRow.to_index == 18)
        ).one()
        old = open_envelope(pb.Envelope.FromString(stored), pb.Receipt, identity.key.public_key)
        old.ClearField("void_from")
        unit.session.execute(
            update(ClickRow)
            .where(ClickRow.ecoin_id == ecoin, ClickRow.to_index == 18)
            .values(receipt=seal(old, identity.key).SerializeToString())
        )
        unit.commit()
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    assert claimed_tiles(broker, ecoin) == [[(0, 0, 5), (None, 8, 18)]]
    assert books(broker, clock).conservation_cents == {"EUR": 0}
