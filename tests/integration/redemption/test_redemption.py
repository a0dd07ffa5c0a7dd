"""Daily redemption end to end: real vendors claim what readers paid (clicks and
windows), the broker pays each span once, nets window credits to the reader,
keeps the per-click history and the books balance to the cent."""

from __future__ import annotations

import pytest

from broker.domain import AccountRef
from broker.storage import RedemptionRepo
from netpay.envelope import seal
from netpay.errors import AlreadyExists, Conflict
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from vendor.broker_client import GrpcBrokerClient
from vendor.storage import RedemptionBatchRow

from .conftest import balance, books, click, handle_of, open_window, pay, reader_id


def history(broker_stub, token: str, ecoin_id: str = "") -> list[bpb.HistoryEntry]:
    reply = broker_stub.History(
        bpb.HistoryRequest(ecoin_id=ecoin_id), metadata=bearer_metadata(token), timeout=10
    )
    return list(reply.entries)


def test_clicks_at_two_vendors_are_redeemed_once_and_the_books_balance(
    start, broker, broker_stub, reader, clock
) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    chain = reader.buy(200)
    pay(v1, chain, 0, "4")  # (0, 5]
    pay(v1, chain, 5, "7")  # (5, 15]
    pay(v2, chain, 15, "5")  # hand-off, then (15, 22]
    pay(v2, chain, 25, "1")  # (25, 26]: (22, 25] is void (a header never used)

    first = v1.redeemer.redeem()
    assert (first.as_json()["accepted"], first.as_json()["rejected"]) == (1, 0)
    assert first.paid_minor == {"EUR": 15}
    second = v2.redeemer.redeem()
    assert second.paid_minor == {"EUR": 8}  # 7 + 1; the 3 void words are nobody's

    assert balance(broker, AccountRef.vendor_bank("daily-hash", "EUR")) == 15
    assert balance(broker, AccountRef.vendor_bank("chain-gazette", "EUR")) == 8
    assert balance(broker, AccountRef.broker_float("EUR")) == 200 - 23
    # Nothing new to claim: a second run sends nothing and pays nothing.
    assert v1.redeemer.redeem().batches == []

    clicks = [h for h in history(broker_stub, reader.token) if h.kind == "click"]
    assert sorted(
        (h.vendor_id, h.item_id, h.from_index, h.to_index, h.amount_minor) for h in clicks
    ) == [
        ("chain-gazette", "1", 25, 26, -1),
        ("chain-gazette", "5", 15, 22, -7),
        ("daily-hash", "4", 0, 5, -5),
        ("daily-hash", "7", 5, 15, -10),
    ]
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0}
    assert report.balanced and report.disputes == []
    assert report.redeemed_cents == {"EUR": 23}


def test_a_retried_batch_pays_once_and_the_same_id_with_other_claims_is_refused(
    start, broker, reader, clock, tmp_path
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(100)
    pay(v1, chain, 0, "7")
    pay(v1, chain, 10, "4")
    # The vendor stores the batch, then "crashes" before it hears the reply.
    built = v1.redeemer._build_batch()
    assert built is not None
    batch_id, request = built
    client = GrpcBrokerClient(broker.grpc_address, token=_token(tmp_path / "daily-hash"))
    try:
        replies = {client.redeem(request).SerializeToString() for _ in range(100)}
        assert len(replies) == 1
        other = bpb.RedeemRequest(batch_id=batch_id, claims=request.claims[:0])
        with pytest.raises(AlreadyExists):
            client.redeem(other)
    finally:
        client.close()
    # After the restart, the pending batch is sent again: the stored reply, paid once.
    report = v1.redeemer.redeem()
    assert [b.retried for b in report.batches] == [True]
    assert report.paid_minor == {"EUR": 15}
    assert balance(broker, AccountRef.vendor_bank("daily-hash", "EUR")) == 15
    with v1.services._ports.uow(read_only=True) as unit:
        row = unit.session.get(RedemptionBatchRow, batch_id)
        assert row is not None and row.state == "done"
    assert books(broker, clock).conservation_cents == {"EUR": 0}


def test_a_claim_over_paid_words_is_refused_and_kept_as_a_dispute(
    start, broker, reader, clock, tmp_path
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(100)
    pay(v1, chain, 0, "7")
    assert v1.redeemer.redeem().paid_minor == {"EUR": 10}
    # A vendor that lost its claim records claims the same words again.
    client = GrpcBrokerClient(broker.grpc_address, token=_token(tmp_path / "daily-hash"))
    again = seal(
        pb.Claim(
            vendor_id="daily-hash",
            ecoin_id=chain.ecoin_id.hex(),
            epoch=1,
            from_index=0,
            to_index=10,
            payword=chain.word(10),
            ranges=[pb.ClaimedRange(from_index=0, to_index=10, item_id="7")],
        ),
        v1.services._ports.identity.key,
    )
    try:
        reply = client.redeem(bpb.RedeemRequest(batch_id="replayed-claim", claims=[again]))
    finally:
        client.close()
    [result] = reply.results
    assert (result.status, result.reason) == (bpb.CLAIM_STATUS_REJECTED, "already_spent")
    assert balance(broker, AccountRef.vendor_bank("daily-hash", "EUR")) == 10
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0}
    assert [(d["vendor_id"], d["from_index"], d["to_index"]) for d in report.disputes] == [
        ("daily-hash", 0, 10)
    ]


def test_window_credit_is_shown_at_the_next_paper_and_netted_to_the_reader(
    start, broker, broker_stub, reader, clock
) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    chain = reader.buy(300)
    opened = open_window(v1.web_url, chain, 0, 40)
    assert opened.status_code == 200, opened.text
    handle = handle_of(opened)
    for article in ("4", "7"):  # 15 of the 40 words
        assert click(v1.web_url, article, handle).status_code == 200
    # The reader moves on: the hand-off closes the window, 25 words go back.
    page = pay(v2, chain, 40, "1", accept="text/html")
    assert 'id="credit-returning"' in page.text
    assert 'data-amount-minor="25"' in page.text
    assert "€0.25" in page.text
    api = pay(v2, chain, 41, "2")  # an API client: no extra read, no such line
    assert "credit-returning" not in api.text

    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    assert v2.redeemer.redeem().paid_minor == {"EUR": 3}
    assert balance(broker, AccountRef.reader_refund(reader_id(broker), "EUR")) == 25
    kinds = [(h.kind, h.amount_minor) for h in history(broker_stub, reader.token)]
    assert ("window_credit", 25) in kinds and ("purchase", -300) in kinds
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0}
    assert report.refunded_cents == {"EUR": 25} and report.balanced


def _token(data_dir) -> str:
    from netpay.files import read_json

    return str(read_json(data_dir / "vendor.json")["vendor_token"])


def test_a_claim_refused_half_way_leaves_nothing_behind(
    start, broker, reader, clock, monkeypatch
) -> None:
    """Each claim runs in its own savepoint: one that fails after some of its writes
    is refused whole, and the batch's other claims are paid."""
    v1 = start("daily-hash")
    first, second = reader.buy(100), reader.buy(100)
    pay(v1, first, 0, "7")
    pay(v1, second, 0, "4")
    handle = handle_of(open_window(v1.web_url, first, 10, 20))  # (10, 30]: a netted credit
    assert click(v1.web_url, "4", handle).status_code == 200
    assert v1.services.close_window(handle, clock.now_ms()).refund_units == 15
    real = RedemptionRepo.net_credit

    def failing(self, ecoin_id, epoch, window_top, claim_id):  # type: ignore[no-untyped-def]
        if ecoin_id == first.ecoin_id.hex():
            raise Conflict("the window credit was netted meanwhile")
        return real(self, ecoin_id, epoch, window_top, claim_id)

    monkeypatch.setattr(RedemptionRepo, "net_credit", failing)
    report = v1.redeemer.redeem()
    assert (report.as_json()["accepted"], report.as_json()["rejected"]) == (1, 1)
    assert report.paid_minor == {"EUR": 5}  # the second coin's click only
    with broker.services.store.begin(read_only=True) as repos:
        assert repos.redemption.paid_spans(first.ecoin_id.hex()) == []
        # The credit the batch carried was kept inside the claim's savepoint: gone too.
        assert repos.redemption.credits(first.ecoin_id.hex(), 1) == []
    books_now = books(broker, clock)
    assert books_now.conservation_cents == {"EUR": 0} and books_now.balanced
    assert books_now.redeemed_cents == {"EUR": 5}
    # "conflict" means "not now": the next run claims it again, and it is paid.
    monkeypatch.setattr(RedemptionRepo, "net_credit", real)
    assert v1.redeemer.redeem().paid_minor == {"EUR": 15}
    books_now = books(broker, clock)
    assert books_now.conservation_cents == {"EUR": 0} and books_now.refunded_cents == {"EUR": 15}
