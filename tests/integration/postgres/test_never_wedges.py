"""Redemption never wedges (issue 9, finding 2; protocol.md, "Redemption"): a claim
that pays nothing writes no ledger entry and never fails its batch, a claim that
fails unexpectedly is refused alone, and a resent batch returns its first reply.

Real broker and vendors, each over a fresh database of the backend under test
(SQLite and PostgreSQL: this folder's conftest)."""

from __future__ import annotations

import logging

from broker.domain import AccountRef
from broker.storage import RedemptionRepo
from broker.storage.tables import EntryRow
from netpay.chain import Chain
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, seal
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.integration.redemption.conftest import balance, books, reader_id, send
from tests.integration.redemption.test_recall import recall_after_unreported_clicks
from tests.integration.vendor_windows.conftest import handle_of, open_window
from vendor.broker_client import GrpcBrokerClient
from vendor.server import VendorHandle

from .conftest import vendor_token

ACCEPTED, REJECTED = bpb.CLAIM_STATUS_ACCEPTED, bpb.CLAIM_STATUS_REJECTED


def force_re_spend(v1: VendorHandle, v2: VendorHandle, chain: Chain, clock: FakeClock) -> None:
    """:func:`recall_after_unreported_clicks`, then the recall's deadline passes: ``v2``
    force-closes epoch 1 and is paid (5, 15] again in epoch 2, based at 5."""
    assert recall_after_unreported_clicks(v1, v2, chain).status_code == 409
    clock.advance(v1.services.limits.lease_ttl_s + v1.services.limits.max_skew_s + 1)
    assert send(v2, chain, 5, "7").status_code == 200


def _zero_entries(broker_handle) -> int:
    from sqlalchemy import func, select

    with broker_handle.services.store.begin(read_only=True) as repos:
        return int(
            repos.session.scalar(
                select(func.count()).select_from(EntryRow).where(EntryRow.amount_minor == 0)
            )
            or 0
        )


def test_a_claim_paid_wholly_from_the_loss_account_pays_and_does_not_wedge(
    start, broker, reader, clock
) -> None:
    """Finding 2: the re-spent range alone, redeemed by the forcing vendor, was paid
    wholly from broker losses; the float's entry was 0, the ledger refused it and the
    whole batch failed with INTERNAL, every run."""
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    chain = reader.buy(300)
    force_re_spend(v1, v2, chain, clock)
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}

    # The Gazette's only claim is (5, 15]: every unit of it overlaps the Daily Hash's.
    first = v2.redeemer.redeem()
    assert [b.error for b in first.batches] == [None], first.as_json()
    assert first.paid_minor == {"EUR": 10}
    assert v2.redeemer.redeem().batches == []  # nothing left: no batch sent again
    assert balance(broker, AccountRef.broker_loss("EUR")) == -10
    assert _zero_entries(broker) == 0
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced


Tiles = list[tuple[int, int, int]]  # (void_from, prev, to) of each listed Receipt


def signed_claim(
    vendor: VendorHandle,
    chain: Chain,
    epoch: int,
    tiles: Tiles,
    *,
    span: tuple[int, int] | None = None,
    word: bytes | None = None,
    key: SigningKey | None = None,
) -> pb.Envelope:
    """A Claim of ``vendor`` listing ``tiles`` over ``span`` (default: the tiles')."""
    start, top = span or (tiles[0][0], tiles[-1][2])
    claim = pb.Claim(
        vendor_id=vendor.vendor_id,
        ecoin_id=chain.ecoin_id.hex(),
        epoch=epoch,
        from_index=start,
        to_index=top,
        payword=chain.word(top) if word is None else word,
        ranges=[
            pb.ClaimedRange(void_from=v, from_index=p, to_index=t, item_id="i", time_ms=1)
            for v, p, t in tiles
        ],
    )
    return seal(claim, key or vendor.services._ports.identity.key)


def _ledger_rows(broker_handle) -> int:
    from sqlalchemy import func, select

    with broker_handle.services.store.begin(read_only=True) as repos:
        return int(repos.session.scalar(select(func.count()).select_from(EntryRow)) or 0)


def test_one_batch_mixing_zero_pay_overlap_invalid_failing_and_good_claims(
    start, broker, reader, clock, tmp_path, monkeypatch, caplog
) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    a, b, c, d, f = (reader.buy(100) for _ in range(5))
    # Coin A: the forced recall of finding 2; the Daily Hash is paid (0, 15] first.
    force_re_spend(v1, v2, a, clock)
    assert send(v2, a, 15, "1").status_code == 200  # (15, 16]
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    for chain in (b, c, f):
        assert send(v2, chain, 0, "5").status_code == 200  # (0, 7] each
    opened = open_window(v2.web_url, d, 0, 20)  # coin D: a window no click is paid from
    assert opened.status_code == 200, opened.text
    credit = v2.services.close_window(handle_of(opened), clock.now_ms())
    assert credit.refund_units == 20

    stranger = SigningKey.generate()
    claims = [
        signed_claim(v2, a, 2, [(5, 5, 15)]),  # wholly from broker losses: the float moves 0
        signed_claim(v2, a, 2, [(15, 15, 16)]),  # good
        signed_claim(v2, b, 1, [(0, 0, 7)]),  # good
        signed_claim(v2, b, 1, [(3, 3, 7)]),  # overlaps the claim before it
        signed_claim(v2, c, 1, [(0, 0, 7)], word=c.word(6)),  # a bad word
        signed_claim(v2, c, 1, [(0, 0, 7)], key=stranger),  # a bad signature
        signed_claim(v2, d, 1, [], span=(0, 20)),  # pays the vendor nothing: netted
        signed_claim(v2, f, 1, [(0, 0, 7)]),  # fails unexpectedly (below)
    ]
    request = bpb.RedeemRequest(batch_id="mixed", claims=claims, window_credits=[credit.credit])
    real_add_claim = RedemptionRepo.add_claim

    def add_claim(self, row, ranges):  # type: ignore[no-untyped-def]
        if row.ecoin_id == f.ecoin_id.hex():
            raise RuntimeError(f"secret {f.word(7).hex()}")
        return real_add_claim(self, row, ranges)

    monkeypatch.setattr(RedemptionRepo, "add_claim", add_claim)
    client = GrpcBrokerClient(broker.grpc_address, token=vendor_token(tmp_path / "chain-gazette"))
    try:
        with caplog.at_level(logging.ERROR, logger="broker.redemption"):
            reply = client.redeem(request)
        entries = _ledger_rows(broker)
        again = client.redeem(request)  # a resend: the first reply, paid once
    finally:
        client.close()

    assert [(r.ecoin_id, r.to_index, r.status, r.reason, r.paid_minor) for r in reply.results] == [
        (a.ecoin_id.hex(), 15, ACCEPTED, "", 10),
        (a.ecoin_id.hex(), 16, ACCEPTED, "", 1),
        (b.ecoin_id.hex(), 7, ACCEPTED, "", 7),
        (b.ecoin_id.hex(), 7, REJECTED, "already_spent", 0),
        (c.ecoin_id.hex(), 7, REJECTED, "bad_payword", 0),
        (c.ecoin_id.hex(), 7, REJECTED, "bad_signature", 0),
        (d.ecoin_id.hex(), 20, ACCEPTED, "", 0),
        (f.ecoin_id.hex(), 7, REJECTED, "internal", 0),
    ]
    assert reply.results[6].refund_units == 20
    assert again.SerializeToString() == reply.SerializeToString()
    assert _ledger_rows(broker) == entries and _zero_entries(broker) == 0
    assert [(p.currency, p.balance_minor) for p in reply.paid] == [("EUR", 18)]
    assert balance(broker, AccountRef.vendor_bank("chain-gazette", "EUR")) == 18
    assert balance(broker, AccountRef.vendor_payable("chain-gazette", "EUR")) == 0
    assert balance(broker, AccountRef.reader_refund(reader_id(broker), "EUR")) == 20
    assert balance(broker, AccountRef.broker_loss("EUR")) == -10
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0} and report.balanced
    [overlap] = [x for x in report.disputes if x["ecoin_id"] == b.ecoin_id.hex()]
    assert (overlap["vendor_id"], overlap["epoch"], overlap["from_index"]) == (
        "chain-gazette",
        1,
        3,
    )
    assert overlap["to_index"] == 7 and overlap["overlaps_claims"]
    # The unexpected failure is logged with where it happened, never the claim's words
    # nor the exception's message.
    [logged] = [r.getMessage() for r in caplog.records if r.name == "broker.redemption"]
    assert "RuntimeError" in logged and f.ecoin_id.hex() in logged
    assert "secret" not in logged and f.word(7).hex() not in logged


def test_a_claim_that_failed_unexpectedly_is_claimed_again_by_the_next_run(
    start, broker, reader, clock, monkeypatch
) -> None:
    v1 = start("daily-hash")
    good, unlucky = reader.buy(100), reader.buy(100)
    assert send(v1, good, 0, "7").status_code == 200
    assert send(v1, unlucky, 0, "4").status_code == 200
    real_add_claim = RedemptionRepo.add_claim

    def add_claim(self, row, ranges):  # type: ignore[no-untyped-def]
        if row.ecoin_id == unlucky.ecoin_id.hex():
            raise ZeroDivisionError("a bug")
        return real_add_claim(self, row, ranges)

    monkeypatch.setattr(RedemptionRepo, "add_claim", add_claim)
    first = v1.redeemer.redeem()
    assert (first.as_json()["accepted"], first.as_json()["rejected"]) == (1, 1)
    assert first.paid_minor == {"EUR": 10}
    monkeypatch.setattr(RedemptionRepo, "add_claim", real_add_claim)  # the bug is fixed
    assert v1.redeemer.redeem().paid_minor == {"EUR": 5}
    assert balance(broker, AccountRef.vendor_bank("daily-hash", "EUR")) == 15
    assert books(broker, clock).conservation_cents == {"EUR": 0}
