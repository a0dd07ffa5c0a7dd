"""The Wallet use cases against a fake broker object and a fake vendor web site."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests

import ewallet_client
from ewallet_client import Wallet, default_wallet_dir
from ewallet_client.domain import CoinState
from netpay.chain import Chain, hash_down, verify_word
from netpay.clock import FakeClock
from netpay.encoding import b64url_decode, b64url_encode
from netpay.envelope import SigningKey, open_envelope
from netpay.errors import (
    AlreadySpent,
    BrokerUnavailable,
    CoinBusy,
    Insufficient,
    LimitExceeded,
    PermissionDenied,
    PreconditionFailed,
    Revoked,
    SignatureInvalid,
    Unauthenticated,
)
from netpay.header import parse_authorization
from netpay.v1 import statements_pb2 as pb
from tests.fakes.pages import json_response
from tests.fakes.wallet_store import shortcuts

PASSWORD = "correct horse battery staple"


def _article(vendor: Any, item: str = "1") -> str:
    return f"{vendor.url}/articles/{item}"


def test_public_surface() -> None:
    assert sorted(ewallet_client.__all__) == [
        "CoinState",
        "CoinView",
        "ReadResult",
        "Wallet",
        "default_wallet_dir",
    ]


def test_default_wallet_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NETPAY_WALLET_DIR", str(tmp_path / "explicit"))
    assert default_wallet_dir() == tmp_path / "explicit"
    monkeypatch.delenv("NETPAY_WALLET_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_wallet_dir() == tmp_path / "xdg" / "netpay" / "wallet"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_wallet_dir() == tmp_path / "home" / ".local" / "share" / "netpay" / "wallet"


# -- identity -------------------------------------------------------------------


def test_register_pins_the_broker_and_keeps_a_token(wallet: Wallet, broker: Any) -> None:
    st = shortcuts(wallet).settings()
    assert st.broker_id == "broker"
    assert st.broker_public_key == broker.key.public_key
    assert st.reader_id == "r-1"
    assert st.token in broker.tokens
    assert st.max_gap_units == 1000


def test_a_changed_broker_key_is_refused(wallet: Wallet, broker: Any) -> None:
    before = shortcuts(wallet).settings()
    broker.key = SigningKey.generate()  # same id and address, another key
    with pytest.raises(PermissionDenied, match="broker key changed"):
        wallet.login(None, "ann", PASSWORD)
    after = shortcuts(wallet).settings()
    assert after.broker_public_key == before.broker_public_key
    assert after.token == before.token


def test_a_changed_broker_id_is_refused(wallet: Wallet, broker: Any) -> None:
    broker.broker_id = "other"
    with pytest.raises(PermissionDenied, match="broker id changed"):
        wallet.login("127.0.0.1:7001", "ann", PASSWORD)
    assert shortcuts(wallet).settings().broker_addr == "127.0.0.1:7000"


def test_login_with_a_wrong_password_keeps_the_old_token(wallet: Wallet) -> None:
    token = shortcuts(wallet).settings().token
    with pytest.raises(Unauthenticated):
        wallet.login(None, "ann", "wrong")
    assert shortcuts(wallet).settings().token == token


def test_the_password_never_reaches_the_disk(wallet: Wallet, wallet_dir: Path, vendor: Any) -> None:
    wallet.login(None, "ann", PASSWORD)
    wallet.buy(100)
    wallet.read(_article(vendor))
    wallet.store.close()
    files = [p for p in wallet_dir.rglob("*") if p.is_file()]
    assert any(p.name == "wallet.sqlite" for p in files)
    for p in files:
        data = p.read_bytes()
        assert PASSWORD.encode() not in data, p
        assert PASSWORD.encode("utf-16-le") not in data, p


# -- buying ---------------------------------------------------------------------


def test_buy_verifies_the_touchstone(wallet: Wallet, broker: Any, clock: FakeClock) -> None:
    coin = wallet.buy(200, 1, "EUR")
    assert coin.state is CoinState.ACTIVE
    assert (coin.n, coin.unit_value_minor, coin.currency) == (200, 1, "EUR")
    assert coin.words_left == 200 and coin.value_left_minor == 200
    assert coin.expires_at_ms == broker.coins[coin.ecoin_id].touchstone.expires_at_ms
    assert broker.balances["r-1"] == 10_000 - 200
    req = broker.buy_requests[-1]
    assert req.wallet_kind == pb.WALLET_KIND_CLIENT_SIDE
    assert req.root == shortcuts(wallet).word(coin.ecoin_id, 0)
    assert [c.ecoin_id for c in wallet.coins()] == [coin.ecoin_id]


def test_a_pending_coin_survives_a_failed_buy_and_is_retried_with_its_request_id(
    wallet: Wallet, broker: Any
) -> None:
    broker.fail_buy_before.append(BrokerUnavailable("UNAVAILABLE: broker down"))
    with pytest.raises(BrokerUnavailable):
        wallet.buy(50)
    [pending] = wallet.coins()
    assert pending.state is CoinState.PENDING
    assert broker.coins == {}
    first = broker.buy_requests[-1]

    coin = wallet.buy(50)
    retry = broker.buy_requests[-1]
    assert retry.request_id == first.request_id
    assert retry.ecoin_id == first.ecoin_id == coin.ecoin_id
    assert coin.state is CoinState.ACTIVE
    assert len(wallet.coins()) == 1


def test_a_lost_buy_reply_is_recovered_without_paying_twice(wallet: Wallet, broker: Any) -> None:
    broker.lose_buy_replies = 1  # the broker sells, the reply never arrives
    with pytest.raises(BrokerUnavailable):
        wallet.buy(50)
    assert broker.balances["r-1"] == 10_000 - 50
    [coin] = wallet.resume_pending()
    assert coin.state is CoinState.ACTIVE
    assert broker.balances["r-1"] == 10_000 - 50
    assert len({r.request_id for r in broker.buy_requests}) == 1


def test_a_refused_sale_abandons_the_coin(wallet: Wallet, broker: Any) -> None:
    with pytest.raises(Insufficient):
        wallet.buy(20_000)
    assert wallet.coins() == []
    assert [c.state for c in shortcuts(wallet).coins()] == [CoinState.ABANDONED]
    coin = wallet.buy(100)  # a new coin with a new request id
    assert len({r.request_id for r in broker.buy_requests}) == 2
    assert coin.state is CoinState.ACTIVE


def test_a_touchstone_from_another_key_is_refused(wallet: Wallet, broker: Any) -> None:
    good_key = broker.key
    broker.key = SigningKey.generate()
    with pytest.raises(SignatureInvalid):
        wallet.buy(30)
    assert [c.state for c in wallet.coins()] == [CoinState.PENDING]
    broker.key = good_key
    broker.sales.clear()  # the honest broker signs the same sale again
    broker.coins.clear()
    assert wallet.buy(30).state is CoinState.ACTIVE


def test_buy_needs_a_login(tmp_path: Path, broker: Any) -> None:
    with Wallet(tmp_path / "w", broker_factory=broker.factory) as w, pytest.raises(Unauthenticated):
        w.buy(10)


# -- paying ---------------------------------------------------------------------


def test_read_pays_and_verifies_receipts(wallet: Wallet, vendor: Any, broker: Any) -> None:
    coin = wallet.buy(100)
    r1 = wallet.read(_article(vendor, "1"))
    assert r1.status == 200 and b"article 1" in r1.body
    assert r1.amount_paid_minor == 5 and r1.currency == "EUR"
    assert r1.receipt is not None and r1.receipt_error is None
    assert (r1.receipt.from_index, r1.receipt.to_index) == (0, 5)
    assert r1.balance_words == 95 and r1.vendor_balance_words == 95

    r2 = wallet.read(_article(vendor, "2"))
    assert r2.receipt is not None
    assert (r2.receipt.from_index, r2.receipt.to_index) == (5, 10)
    assert r2.balance_words == 90
    # the second header names the vendor that holds the coin
    assert parse_authorization(vendor.paid_requests[-1]).holder == "daily"

    [view] = wallet.coins()
    assert (view.index, view.accepted_index, view.last_vendor) == (10, 10, "daily")
    assert view.value_left_minor == 90
    history = wallet.history()
    assert [(h["from_index"], h["to_index"], h["item_id"]) for h in history] == [
        (0, 5, "1"),
        (5, 10, "2"),
    ]
    raw = b64url_decode(str(history[0]["receipt"]))
    receipt = open_envelope(pb.Envelope.FromString(raw), pb.Receipt, vendor.key.public_key)
    assert receipt.ecoin_id == coin.ecoin_id
    assert shortcuts(wallet).outstanding_words(coin.ecoin_id) == 0
    assert broker.certificate_calls == 1  # the certificate is kept in the store


def test_a_free_resource_costs_nothing(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(10)
    r = wallet.read(f"{vendor.url}/free")
    assert (r.status, r.body, r.paid, r.receipt) == (200, b"free text", False, None)
    assert wallet.coins()[0].index == 0


def test_the_header_matches_the_chain(wallet: Wallet, vendor: Any, broker: Any) -> None:
    coin = wallet.buy(300)
    header = wallet.authorize(_article(vendor))
    cred = parse_authorization(header)
    assert (cred.ecoin_id, cred.prev, cred.index, cred.holder) == (coin.ecoin_id, 0, 5, None)
    root = broker.coins[coin.ecoin_id].touchstone.root
    assert verify_word(cred.ecoin_bytes, 0, root, 5, cred.payword, 5)
    # and the next header continues from there, whatever the chain position
    for _ in range(20):
        nxt = parse_authorization(wallet.authorize(_article(vendor)))
        assert nxt.prev == cred.index and nxt.index == cred.index + 5
        assert hash_down(nxt.ecoin_bytes, nxt.index, nxt.payword, cred.index) == cred.payword
        cred = nxt
    assert cred.index == 105
    assert vendor.paid_requests == []  # authorize never pays by itself


def test_authorize_then_requests_with_the_header_pays(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(50)
    url = _article(vendor, "7")
    header = wallet.authorize(url)
    with requests.Session() as s:
        resp = s.get(url, headers={"Authorization": header}, timeout=10)
    assert resp.status_code == 200 and b"article 7" in resp.content
    assert "NetPay-Receipt" in resp.headers
    assert wallet.coins()[0].index == 5


def test_authorize_on_a_free_url_is_refused(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(10)
    with pytest.raises(PreconditionFailed):
        wallet.authorize(f"{vendor.url}/free")


def test_a_price_above_the_cap_is_refused(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    vendor.price_minor = 150
    with pytest.raises(LimitExceeded):
        wallet.read(_article(vendor))
    with pytest.raises(LimitExceeded):
        wallet.authorize(_article(vendor), max_amount_minor=149)
    assert wallet.coins()[0].index == 0
    assert vendor.paid_requests == []
    vendor.price_minor = 4
    with pytest.raises(LimitExceeded):
        wallet.read(_article(vendor), max_amount_minor=3)
    assert wallet.read(_article(vendor), max_amount_minor=4).receipt is not None


def test_a_url_outside_the_certified_origin_is_refused(
    wallet: Wallet, vendor: Any, broker: Any
) -> None:
    wallet.buy(100)
    broker.certify("daily", vendor.key.public_key, "http://127.0.0.1:1")
    with pytest.raises(PermissionDenied, match="web origin"):
        wallet.read(_article(vendor))
    with pytest.raises(PermissionDenied):
        wallet.authorize(_article(vendor))
    assert wallet.coins()[0].index == 0
    assert vendor.paid_requests == []


def test_a_certificate_from_another_key_is_refused(
    wallet: Wallet, vendor: Any, broker: Any
) -> None:
    wallet.buy(100)
    real = broker.key
    broker.key = SigningKey.generate()
    broker.certify("daily", vendor.key.public_key, vendor.url)
    broker.key = real
    with pytest.raises(SignatureInvalid):
        wallet.read(_article(vendor))
    assert wallet.coins()[0].index == 0


def test_a_challenge_naming_another_broker_is_refused(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    vendor.challenge_broker = "evil"
    with pytest.raises(PermissionDenied, match="evil"):
        wallet.read(_article(vendor))
    assert wallet.coins()[0].index == 0


def test_no_coin_that_fits(wallet: Wallet, vendor: Any) -> None:
    with pytest.raises(Insufficient):
        wallet.read(_article(vendor))
    wallet.buy(4)
    with pytest.raises(Insufficient):
        wallet.read(_article(vendor))


def test_a_bad_receipt_still_shows_the_resource(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    vendor.receipt_key = SigningKey.generate()
    r = wallet.read(_article(vendor))
    assert r.status == 200 and b"article 1" in r.body
    assert r.receipt is None
    assert isinstance(r.receipt_error, SignatureInvalid)
    assert any("receipt" in w for w in r.warnings)
    assert wallet.history() == []
    [coin] = wallet.coins()
    assert (coin.index, coin.accepted_index) == (5, 0)


def test_a_receipt_for_another_range_is_refused(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    vendor.receipt_tamper = {"from_index": 1}
    r = wallet.read(_article(vendor))
    assert isinstance(r.receipt_error, SignatureInvalid)
    assert "range" in r.receipt_error.detail
    assert wallet.history() == []


def test_resync_needs_the_seen_of_the_coins_own_word(
    wallet: Wallet, vendor: Any, broker: Any
) -> None:
    coin = wallet.buy(100)
    # A vendor claims the coin is spent up to 60, with the seen of a word it made up,
    # then with the seen of the coin's word at another index: a made-up index.
    for word in (b"\x07" * 32, shortcuts(wallet).word(coin.ecoin_id, 59)):
        vendor.move(coin.ecoin_id, 60, word)
        with pytest.raises(AlreadySpent, match="does not match this coin's word"):
            wallet.read(_article(vendor))
    assert wallet.coins()[0].index == 10  # only the headers it issued moved it
    assert len(vendor.paid_requests) == 2

    # Another wallet with this coin (a restored copy) really spent up to 60.
    vendor.move(coin.ecoin_id, 60, shortcuts(wallet).word(coin.ecoin_id, 60))
    r = wallet.read(_article(vendor))
    assert r.receipt is not None
    assert (r.receipt.from_index, r.receipt.to_index) == (60, 65)
    assert any("spent up to 60" in w for w in r.warnings)
    assert wallet.coins()[0].index == 65


def test_a_published_word_is_not_a_resync(wallet: Wallet, vendor: Any) -> None:
    """A 1.0 body (``payword``, no ``seen``) does not move the wallet: the wallet
    resynchronises on ``seen`` only (protocol.md revision 1.1, change 1)."""
    coin = wallet.buy(100)
    word = shortcuts(wallet).word(coin.ecoin_id, 60)
    body = {"error": "already_spent", "detail": "1.0", "index": 60, "payword": b64url_encode(word)}
    vendor.inject.append(json_response(409, body, vendor.challenge()))
    with pytest.raises(AlreadySpent) as err:
        wallet.read(_article(vendor))
    assert (err.value.index, err.value.seen) == (60, None)
    assert wallet.coins()[0].index == 5 and len(vendor.paid_requests) == 1


def test_resync_attempts_are_bounded(wallet: Wallet, vendor: Any) -> None:
    coin = wallet.buy(200)
    word = shortcuts(wallet).word(coin.ecoin_id, 150)
    # The vendor keeps answering already_spent with a genuine (index, seen).
    for _ in range(5):
        vendor.inject.append(vendor.error_at(409, "already_spent", 150, word))
    with pytest.raises(AlreadySpent):
        wallet.read(_article(vendor))
    assert len(vendor.paid_requests) == 3
    # moved up to 150 once (the seen checked out), then two headers of 5 words
    assert wallet.coins()[0].index == 160


def test_coin_busy_waits_and_resends_the_same_header(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    slept: list[float] = []
    wallet.sleep = slept.append
    busy = vendor.error(409, "coin_busy")
    busy.headers["Retry-After"] = "30"
    vendor.inject.append(busy)
    r = wallet.read(_article(vendor))
    assert r.receipt is not None
    assert slept == [5.0]  # Retry-After capped at 5 s
    assert len(vendor.paid_requests) == 2
    assert vendor.paid_requests[0] == vendor.paid_requests[1]


def test_coin_busy_retries_are_bounded(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    slept: list[float] = []
    wallet.sleep = slept.append
    for _ in range(10):
        vendor.inject.append(vendor.error(409, "coin_busy"))
    with pytest.raises(CoinBusy):
        wallet.read(_article(vendor))
    assert len(slept) == 3 and len(vendor.paid_requests) == 4


def test_other_vendor_errors_are_typed(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    vendor.inject.append(vendor.error(402, "revoked"))
    with pytest.raises(Revoked):
        wallet.read(_article(vendor))


def test_outstanding_headers_warn_near_the_gap_limit(
    tmp_path: Path, clock: FakeClock, vendor: Any, broker: Any
) -> None:
    broker.max_gap_units = 20  # warn from 0.8 * 20 = 16 words not seen accepted
    with Wallet(tmp_path / "w", clock=clock, broker_factory=broker.factory) as w:
        w.register("127.0.0.1:7000", "bob", PASSWORD)
        w.buy(100)
        for _ in range(4):  # 0, 5, 10, 15 words outstanding before each
            w.authorize(_article(vendor))
            assert w.warnings == []
        # 20 words in unused headers: the read warns, and still pays (the
        # vendor allows a gap of 20); its receipt settles every header below.
        r = w.read(_article(vendor))
        assert len(r.warnings) == 1 and "20 words" in r.warnings[0]
        assert r.receipt is not None and (r.receipt.from_index, r.receipt.to_index) == (20, 25)
        assert shortcuts(w).outstanding_words(r.receipt.ecoin_id) == 0
        for _ in range(4):
            w.authorize(_article(vendor))
            assert w.warnings == []
        w.authorize(_article(vendor))
        assert len(w.warnings) == 1 and "20 words" in w.warnings[0]


def test_two_wallet_commands_at_once_never_share_a_range(
    wallet: Wallet, make_wallet: Any, vendor: Any
) -> None:
    wallet.buy(1000)
    headers: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        w = make_wallet()
        try:
            for _ in range(10):
                h = w.authorize(_article(vendor))
                with lock:
                    headers.append(h)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    spans = sorted((c.prev, c.index) for c in map(parse_authorization, headers))
    assert spans == [(5 * i, 5 * i + 5) for i in range(30)]


def test_a_chain_made_by_the_wallet_is_the_protocol_chain(wallet: Wallet) -> None:
    coin = wallet.buy(70)
    seed = shortcuts(wallet).word(coin.ecoin_id, 70)
    full = Chain.make(bytes.fromhex(coin.ecoin_id), 70, seed)
    assert all(shortcuts(wallet).word(coin.ecoin_id, j) == full.word(j) for j in range(71))


def test_an_expired_coin_is_not_used(
    wallet: Wallet, vendor: Any, broker: Any, clock: FakeClock
) -> None:
    wallet.buy(100)
    clock.advance(90 * 86_400)
    broker.certify("daily", vendor.key.public_key, vendor.url)  # a fresh certificate
    with pytest.raises(Insufficient):
        wallet.read(_article(vendor))


def test_the_fake_vendor_refuses_a_forged_word(wallet: Wallet, vendor: Any, broker: Any) -> None:
    # The fake itself must check words, or the tests above prove nothing.
    coin = wallet.buy(100)
    header = wallet.authorize(_article(vendor))
    cred = parse_authorization(header)
    forged = header.replace(
        header.split('payword="')[1].split('"')[0],
        "B" * 43,
    )
    assert parse_authorization(forged).payword != cred.payword
    with requests.Session() as s:
        resp = s.get(_article(vendor), headers={"Authorization": forged}, timeout=10)
    assert resp.status_code == 402 and resp.json()["error"] == "bad_payword"
    assert coin.ecoin_id == cred.ecoin_id


def test_headers_used_elsewhere_are_settled_by_the_brokers_latest_word(
    tmp_path: Path, clock: FakeClock, vendor: Any, broker: Any
) -> None:
    broker.max_gap_units = 20
    with (
        Wallet(tmp_path / "w", clock=clock, broker_factory=broker.factory) as w,
        requests.Session() as s,
    ):
        w.register("127.0.0.1:7000", "bob", PASSWORD)
        coin = w.buy(100)
        for _ in range(4):  # curl pays with each header: the wallet never sees a receipt
            resp = s.get(_article(vendor), headers={"Authorization": w.authorize(_article(vendor))})
            assert resp.status_code == 200
        # The broker's latest known word is forged: nothing is settled, the wallet warns.
        broker.latest[coin.ecoin_id] = (20, b"\x01" * 32)
        w.authorize(_article(vendor))
        assert len(w.warnings) == 1 and broker.get_coin_calls == 1
        assert w.coins()[0].index == 25
        # The vendor checkpointed index 20 at the broker: headers up to 20 are settled.
        broker.latest[coin.ecoin_id] = (20, shortcuts(w).word(coin.ecoin_id, 20))
        w.authorize(_article(vendor))
        assert w.warnings == [] and broker.get_coin_calls == 2
        assert shortcuts(w).outstanding_words(coin.ecoin_id) == 10


def test_certificates_are_reused_for_an_hour_and_refetched_when_the_vendor_moved(
    wallet: Wallet, vendor: Any, broker: Any, clock: FakeClock
) -> None:
    wallet.buy(100)
    real_origin = vendor.url
    broker.certify("daily", vendor.key.public_key, "http://127.0.0.1:1")  # an old address
    with pytest.raises(PermissionDenied):
        wallet.read(_article(vendor))
    assert broker.certificate_calls == 1
    broker.certify("daily", vendor.key.public_key, real_origin)  # the vendor registered anew
    assert wallet.read(_article(vendor)).receipt is not None
    assert wallet.read(_article(vendor)).receipt is not None
    assert broker.certificate_calls == 2
    clock.advance(3601)
    assert wallet.read(_article(vendor)).receipt is not None
    assert broker.certificate_calls == 3
