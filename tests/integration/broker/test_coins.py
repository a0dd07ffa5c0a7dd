"""BuyCoin, the ledger, GetCoin / ListCoins / GetAccount over a real channel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from broker.domain import AccountKind, AccountRef
from broker.storage import CoinRow, EntryRow, PurchaseRow, TransactionRow
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.envelope import open_envelope
from netpay.errors import AlreadyExists, Insufficient, InvalidArgument
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb


def ledger_totals(h: Any) -> dict[str, int]:
    """Balance per account kind/owner for EUR, read straight from the entries."""
    with h.broker.services.store.begin() as repos:
        ledger = repos.ledger
        assert ledger.unbalanced_transactions() == []
        return {
            "float": ledger.balance_minor(AccountRef.broker_float("EUR")),
            "funding": ledger.balance_minor(AccountRef.demo_funding("EUR")),
        }


def buy_request(chain: Chain, **changes: Any) -> bpb.BuyCoinRequest:
    fields: dict[str, Any] = {
        "request_id": "r-1",
        "ecoin_id": chain.ecoin_id.hex(),
        "root": chain.root,
        "n": chain.n,
        "unit_value_minor": 1,
        "currency": "EUR",
        "wallet_kind": pb.WALLET_KIND_CLIENT_SIDE,
    }
    fields.update(changes)
    return bpb.BuyCoinRequest(**fields)


def test_buy_debits_the_reader_and_signs_the_touchstone(h: Any) -> None:
    reader = h.reader()
    chain = Chain.make(new_ecoin_id(), 120, new_seed())
    now = h.clock.now_ms()
    reply = h.stub.BuyCoin(buy_request(chain, unit_value_minor=3), metadata=reader.md)
    assert (reply.amount_minor, reply.currency) == (360, "EUR")
    ts = open_envelope(reply.touchstone, pb.Touchstone, h.broker.public_key)
    assert ts.ecoin_id == chain.ecoin_id.hex() and ts.root == chain.root
    assert (ts.n, ts.unit_value_minor, ts.currency) == (120, 3, "EUR")
    assert ts.wallet_kind == pb.WALLET_KIND_CLIENT_SIDE
    assert (ts.owner, ts.broker_id) == (reader.reader_id, "broker")
    assert (ts.issued_at_ms, ts.expires_at_ms) == (now, now + 90 * 86_400_000)
    assert h.balance(reader) == 10_000 - 360
    assert h.balance(reader, "USD") == 10_000
    assert ledger_totals(h) == {"float": 360, "funding": -10_000}


def test_ledger_balances_to_the_cent_after_many_purchases(h: Any) -> None:
    alice, bob = h.reader(), h.reader()
    for n, unit in ((1, 1), (99, 1), (7, 13), (250, 2)):
        h.buy(alice, n, unit_value=unit)
    h.buy(bob, 1234)
    alice_spent = 1 + 99 + 7 * 13 + 250 * 2
    assert h.balance(alice) == 10_000 - alice_spent
    assert h.balance(bob) == 10_000 - 1234
    assert ledger_totals(h) == {"float": alice_spent + 1234, "funding": -20_000}
    with h.broker.services.store.begin() as repos:
        s = repos.session
        # Every entry sums to zero overall, per currency (EUR and USD deposits).
        for currency in ("EUR", "USD"):
            total = s.scalar(
                select(func.sum(EntryRow.amount_minor)).where(EntryRow.currency == currency)
            )
            assert total == 0
        kinds = s.scalars(select(TransactionRow.kind)).all()
        assert sorted(kinds).count("buy_coin") == 5 and kinds.count("demo_deposit") == 4
        assert repos.ledger.balances_of(AccountKind.READER_BANK, alice.reader_id) == {
            "EUR": 10_000 - alice_spent,
            "USD": 10_000,
        }


def test_replayed_request_returns_the_first_result(h: Any) -> None:
    reader = h.reader()
    chain = Chain.make(new_ecoin_id(), 50, new_seed())
    first = h.stub.BuyCoin(buy_request(chain), metadata=reader.md)
    h.clock.advance(10)
    again = h.stub.BuyCoin(buy_request(chain, unit_value_minor=0), metadata=reader.md)
    assert again.touchstone.SerializeToString() == first.touchstone.SerializeToString()
    assert again.amount_minor == first.amount_minor == 50
    assert h.balance(reader) == 10_000 - 50


def test_reused_request_id_with_another_request_is_already_exists(h: Any) -> None:
    reader = h.reader()
    chain = Chain.make(new_ecoin_id(), 50, new_seed())
    h.stub.BuyCoin(buy_request(chain), metadata=reader.md)
    other = Chain.make(new_ecoin_id(), 50, new_seed())
    for request in (
        buy_request(other),
        buy_request(chain, n=49),
        buy_request(chain, currency="USD"),
    ):
        code, err = h.error(h.stub.BuyCoin, request, metadata=reader.md)
        assert code == grpc.StatusCode.ALREADY_EXISTS and isinstance(err, AlreadyExists)
        assert "request id reused" in err.detail
    assert h.balance(reader) == 10_000 - 50


def test_an_ecoin_id_sold_under_another_request_is_already_exists(h: Any) -> None:
    alice, bob = h.reader(), h.reader()
    chain = Chain.make(new_ecoin_id(), 10, new_seed())
    h.stub.BuyCoin(buy_request(chain), metadata=alice.md)
    for reader, request_id in ((alice, "r-2"), (bob, "r-1")):
        code, err = h.error(
            h.stub.BuyCoin, buy_request(chain, request_id=request_id), metadata=reader.md
        )
        assert code == grpc.StatusCode.ALREADY_EXISTS and "already sold" in err.detail
    assert h.balance(bob) == 10_000


def test_insufficient_funds_change_nothing(h: Any) -> None:
    reader = h.reader()
    h.buy(reader, 9_990)
    chain = Chain.make(new_ecoin_id(), 11, new_seed())
    code, err = h.error(h.stub.BuyCoin, buy_request(chain, request_id="big"), metadata=reader.md)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and isinstance(err, Insufficient)
    assert h.balance(reader) == 10
    # The same request id can be used again once it would succeed.
    small = Chain.make(new_ecoin_id(), 10, new_seed())
    h.stub.BuyCoin(buy_request(small, request_id="big"), metadata=reader.md)
    assert h.balance(reader) == 0
    with h.broker.services.store.begin() as repos:
        assert repos.session.scalar(select(func.count()).select_from(CoinRow)) == 2


def test_concurrent_identical_purchases_debit_once(h: Any) -> None:
    reader = h.reader()
    chain = Chain.make(new_ecoin_id(), 40, new_seed())
    request = buy_request(chain, request_id="same")
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: h.stub.BuyCoin(request, metadata=reader.md), range(8)))
    assert len({r.touchstone.SerializeToString() for r in replies}) == 1
    assert h.balance(reader) == 10_000 - 40
    with h.broker.services.store.begin() as repos:
        assert repos.session.scalar(select(func.count()).select_from(PurchaseRow)) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"wallet_kind": pb.WALLET_KIND_SERVER_SIDE},
        {"wallet_kind": pb.WALLET_KIND_UNSPECIFIED},
        {"ecoin_id": "ABCDEF"},
        {"root": b"\x00" * 31},
        {"n": 0},
        {"n": 2**20 + 1},
        {"unit_value_minor": 10_001},
        {"currency": "GBP"},
        {"currency": "eur"},
        {"request_id": ""},
        {"request_id": "x" * 65},
    ],
)
def test_buy_refuses_bad_input(h: Any, changes: dict[str, Any]) -> None:
    reader = h.reader()
    chain = Chain.make(new_ecoin_id(), 5, new_seed())
    code, err = h.error(h.stub.BuyCoin, buy_request(chain, **changes), metadata=reader.md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and isinstance(err, InvalidArgument)
    assert h.balance(reader) == 10_000


def test_server_side_coins_are_made_by_the_broker(h: Any) -> None:
    # A server-side request naming its own id and root is refused (the broker makes
    # them); tests/integration/broker_serverside covers the server-side purchase.
    reader = h.reader()
    chain = Chain.make(new_ecoin_id(), 5, new_seed())
    request = buy_request(chain, wallet_kind=pb.WALLET_KIND_SERVER_SIDE)
    code, err = h.error(h.stub.BuyCoin, request, metadata=reader.md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.detail == "the broker chooses a server-side coin's id and chain"
    assert h.balance(reader) == 10_000


def test_buy_needs_a_reader_token(h: Any) -> None:
    vendor = h.vendor("v1")
    chain = Chain.make(new_ecoin_id(), 5, new_seed())
    for md in ((), vendor.md):
        code, _ = h.error(h.stub.BuyCoin, buy_request(chain), metadata=md)
        assert code == grpc.StatusCode.UNAUTHENTICATED


def test_get_coin_for_the_owner_and_any_vendor(h: Any) -> None:
    alice, bob = h.reader(), h.reader()
    vendor = h.vendor("v1")
    coin = h.buy(alice, 30)
    request = bpb.GetCoinRequest(ecoin_id=coin.ecoin_id)
    for md in (alice.md, vendor.md):
        status = h.stub.GetCoin(request, metadata=md)
        assert status.touchstone == coin.touchstone
        assert (status.state, status.frozen, status.holder) == (bpb.COIN_STATE_FREE, False, "")
        assert (status.epoch, status.latest_index, status.latest_word) == (0, 0, coin.chain.root)
    code, _ = h.error(h.stub.GetCoin, request, metadata=bob.md)
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = h.error(h.stub.GetCoin, request)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = h.error(h.stub.GetCoin, bpb.GetCoinRequest(ecoin_id="nothex"), metadata=alice.md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    h.clock.advance(90 * 86_400)  # the reader's token has expired too; vendors' do not
    assert h.stub.GetCoin(request, metadata=vendor.md).state == bpb.COIN_STATE_EXPIRED


def test_list_coins_and_account(h: Any) -> None:
    alice, bob = h.reader(), h.reader()
    first = h.buy(alice, 10)
    h.clock.advance(1)
    second = h.buy(alice, 20)
    h.buy(bob, 5)
    listed = h.stub.ListCoins(bpb.ListCoinsRequest(), metadata=alice.md).coins
    assert [c.touchstone for c in listed] == [second.touchstone, first.touchstone]
    account = h.stub.GetAccount(bpb.GetAccountRequest(), metadata=alice.md)
    assert account.reader_id == alice.reader_id
    assert {(b.currency, b.balance_minor) for b in account.balances} == {
        ("EUR", 10_000 - 30),
        ("USD", 10_000),
    }


def test_ledger_entries_are_immutable(h: Any) -> None:
    h.reader()
    with h.broker.services.store.begin() as repos:
        entry = repos.session.scalars(select(EntryRow)).first()
        assert entry is not None
        entry.amount_minor += 1
        with pytest.raises(AssertionError, match="immutable"):
            repos.session.flush()
    with h.broker.services.store.begin() as repos:
        entry = repos.session.scalars(select(EntryRow)).first()
        repos.session.delete(entry)
        with pytest.raises(AssertionError, match="immutable"):
            repos.session.flush()


def test_a_correction_is_a_compensating_transaction_posted_once(h: Any) -> None:
    reader = h.reader()
    h.buy(reader, 40)
    assert h.balance(reader) == 10_000 - 40
    with h.broker.services.store.begin() as repos:
        [buy] = repos.session.scalars(
            select(TransactionRow).where(TransactionRow.kind == "buy_coin")
        ).all()
        correction = repos.ledger.compensate(buy.transaction_id, reason="test", at_ms=1)
        repos.commit()
    assert h.balance(reader) == 10_000  # the original entries are untouched, negated
    with h.broker.services.store.begin() as repos:
        assert repos.ledger.unbalanced_transactions() == []
        original = repos.session.scalars(
            select(EntryRow).where(EntryRow.transaction_id == buy.transaction_id)
        ).all()
        assert sorted(e.amount_minor for e in original) == [-40, 40]
        assert correction != buy.transaction_id
    with pytest.raises(AlreadyExists), h.broker.services.store.begin() as repos:
        repos.ledger.compensate(buy.transaction_id, reason="again", at_ms=2)
    assert h.balance(reader) == 10_000
