"""Cookie-cache windows end to end: a real broker and real vendors, the site
over loopback with ``requests`` and explicit Cookie headers; the hand-off to a
second real vendor over gRPC."""

from __future__ import annotations

import re
import secrets
import threading

import grpc
import requests

from broker.server import add_vendor
from netpay.encoding import b64url_decode, b64url_encode
from netpay.envelope import SigningKey, open_envelope
from netpay.header import parse_challenge
from netpay.transport.auth import bearer_metadata, sign_call
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from netpay.v1 import vendor_pb2, vendor_pb2_grpc
from vendor.domain import CloseReason, WindowState

from .conftest import (
    JSON,
    click,
    close,
    handle_of,
    open_window,
    pay_header,
    receipt,
    vendor_key,
)

# article id -> price in cents (vendor/data/articles.json)
PRICE = {"1": 1, "2": 2, "3": 3, "4": 5, "5": 7, "7": 10, "12": 25}
HANDOFF = "/netpay.v1.Vendor/HandOff"


def window_of(handle_vendor, chain):
    return handle_vendor.services.windows(chain.ecoin_id.hex())


def test_a_window_pays_clicks_until_closed(start, reader, broker, broker_stub, clock) -> None:
    daily = start("daily-hash")
    key = vendor_key(broker_stub, broker.public_key, "daily-hash")
    chain = reader.buy(300)
    web = daily.web_url

    opened = open_window(web, chain, 0, 40)
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert (body["window_from"], body["window_top"], body["words_left"], body["epoch"]) == (
        0,
        40,
        40,
        1,
    )
    handle = handle_of(opened)
    flags = [p.strip() for p in opened.headers["Set-Cookie"].split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"} <= set(flags)
    assert "Secure" not in flags  # 127.0.0.1
    assert reader.coin(chain).holder == "daily-hash"
    # The same header again: the same window and cookie, nothing spent.
    again = open_window(web, chain, 0, 40)
    assert again.status_code == 200 and handle_of(again) == handle

    # Clicks consume exactly the prices, receipts contiguous inside (0, 40].
    edge = 0
    first: requests.Response | None = None
    for article in ("4", "7", "1", "5"):  # 5 + 10 + 1 + 7 = 23
        resp = click(web, article, handle)
        assert resp.status_code == 200, resp.text
        first = first or resp
        r = receipt(resp, key)
        assert (r.from_index, r.to_index, r.epoch, r.item_id) == (
            edge,
            edge + PRICE[article],
            1,
            article,
        )
        assert r.amount_minor == PRICE[article]
        edge = r.to_index
        assert resp.headers["NetPay-Balance"] == resp.headers["NetPay-Window"] == str(40 - edge)
    assert edge == 23
    # A retried click re-serves the original receipt and consumes nothing.
    assert first is not None
    retry = click(web, "4", handle, **{"Sec-Fetch-Site": "same-origin"})
    assert retry.status_code == 200
    assert retry.headers["NetPay-Receipt"] == first.headers["NetPay-Receipt"]
    # A click that does not fit: the normal challenge, nothing consumed.
    big = click(web, "12", handle)
    assert big.status_code == 402
    assert parse_challenge(big.headers["WWW-Authenticate"]).amount_minor == 25
    # Another site's page cannot spend the window.
    cross = click(web, "3", handle, **{"Sec-Fetch-Site": "cross-site"})
    assert (cross.status_code, cross.json()["error"]) == (402, "payment_required")
    # A foreign handle spends nothing either.
    assert click(web, "3", b64url_encode(secrets.token_bytes(32))).status_code == 402
    [w] = window_of(daily, chain)
    assert w.consumed_index == 23
    assert sum(c.to_index - c.from_index for c in daily.services.window_clicks(w.window_id)) == 23

    clock.advance(1)
    closed = close(web, handle)
    assert closed.status_code == 200, closed.text
    assert closed.json()["refund_units"] == 17
    credit = open_envelope(
        pb.Envelope.FromString(b64url_decode(closed.json()["window_credit"])),
        pb.WindowCredit,
        key,  # the vendor's certified key
    )
    assert (credit.vendor_id, credit.ecoin_id, credit.epoch) == (
        "daily-hash",
        chain.ecoin_id.hex(),
        1,
    )
    assert (credit.window_top, credit.consumed_index, credit.refund_units, credit.reason) == (
        40,
        23,
        40 - 23,
        "closed",
    )
    assert "Max-Age=0" in closed.headers["Set-Cookie"]
    # The replayed handle after close: 402, nothing consumed.
    assert click(web, "3", handle).status_code == 402
    assert window_of(daily, chain)[0].consumed_index == 23
    # The coin pays per click on from the window top.
    paid = requests.get(
        f"{web}/articles/2",
        headers={**JSON, "Authorization": pay_header(chain, 40, 42)},
        timeout=30,
    )
    assert paid.status_code == 200 and receipt(paid, key).from_index == 40


def test_expiry_and_a_second_window(start, reader, clock) -> None:
    daily = start("daily-hash")
    chain = reader.buy(300)
    web = daily.web_url
    first = handle_of(open_window(web, chain, 0, 20))
    assert click(web, "4", first).status_code == 200
    second = handle_of(open_window(web, chain, 20, 30))
    old, new = window_of(daily, chain)
    assert (old.state, old.close_reason, old.words_left) == (
        WindowState.CLOSED,
        CloseReason.CLOSED,
        15,
    )
    assert new.state is WindowState.OPEN
    assert click(web, "1", first).status_code == 402
    assert click(web, "1", second).status_code == 200

    clock.advance(86_400)
    daily.services.checkpoint_all()  # what the loop does meanwhile
    assert daily.services.close_expired_windows() == 1
    assert window_of(daily, chain)[1].close_reason is CloseReason.EXPIRED
    expired = click(web, "2", second)
    assert expired.status_code == 402
    assert window_of(daily, chain)[1].consumed_index == 21
    assert close(web, second).json()["refund_units"] == 29


def test_concurrent_clicks_never_exceed_the_window(start, reader) -> None:
    daily = start("daily-hash")
    chain = reader.buy(300)
    web = daily.web_url
    handle = handle_of(open_window(web, chain, 0, 12))
    statuses: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def read(article: str) -> None:
        barrier.wait()
        statuses[article] = click(web, article, handle).status_code

    threads = [threading.Thread(target=read, args=(a,)) for a in ("5", "7")]  # 7 + 10 > 12
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses.values()) == [200, 402]
    winner = next(a for a, s in statuses.items() if s == 200)
    assert window_of(daily, chain)[0].consumed_index == PRICE[winner]


def test_hand_off_to_a_second_vendor_closes_the_window(start, reader, broker, broker_stub) -> None:
    daily = start("daily-hash")
    gazette = start("chain-gazette")
    daily_key = vendor_key(broker_stub, broker.public_key, "daily-hash")
    gazette_key = vendor_key(broker_stub, broker.public_key, "chain-gazette")
    chain = reader.buy(300)
    handle = handle_of(open_window(daily.web_url, chain, 0, 50))
    for article in ("7", "4"):
        assert click(daily.web_url, article, handle).status_code == 200

    # The reader pays the Gazette with a header from the window top.
    paid = requests.get(
        f"{gazette.web_url}/articles/4",
        headers={**JSON, "Authorization": pay_header(chain, 50, 55)},
        timeout=30,
    )
    assert paid.status_code == 200, paid.text
    r = receipt(paid, gazette_key)
    assert (r.from_index, r.to_index, r.epoch) == (50, 55, 2)
    status = reader.coin(chain)
    assert (status.epoch, status.holder) == (2, "chain-gazette")

    [w] = window_of(daily, chain)
    assert (w.state, w.close_reason, w.consumed_index) == (
        WindowState.CLOSED,
        CloseReason.HANDOFF,
        15,
    )
    assert w.credit is not None
    credit = open_envelope(pb.Envelope.FromString(w.credit), pb.WindowCredit, daily_key)
    assert (credit.window_top, credit.consumed_index, credit.refund_units, credit.reason) == (
        50,
        15,
        35,
        "handoff",
    )
    stored = daily.services.coin(chain.ecoin_id.hex())
    assert stored is not None and stored.handoff_coin_index is not None
    ci = open_envelope(pb.Envelope.FromString(stored.handoff_coin_index), pb.CoinIndex, daily_key)
    assert (ci.index, ci.to_vendor, ci.epoch) == (50, "chain-gazette", 1)
    # The window is gone: its cookie pays nothing at the Daily Hash.
    assert click(daily.web_url, "1", handle).status_code == 402
    assert window_of(daily, chain)[0].consumed_index == 15


def test_the_hand_off_reply_carries_the_window_credit(
    start, reader, broker, broker_dir, broker_stub, clock
) -> None:
    daily = start("daily-hash")
    daily_key = vendor_key(broker_stub, broker.public_key, "daily-hash")
    chain = reader.buy(300)
    handle = handle_of(open_window(daily.web_url, chain, 0, 30))
    assert click(daily.web_url, "7", handle).status_code == 200

    # A third vendor, enrolled like any other, is paid from the window top.
    key = SigningKey.generate()
    reg = broker_stub.RegisterVendor(
        bpb.RegisterVendorRequest(
            enrollment_token=add_vendor(broker_dir, "third"),
            public_key=key.public_key,
            grpc_address="127.0.0.1:1",
            web_origin="http://127.0.0.1:1",
        )
    )
    reply = broker_stub.AcquireCoin(
        bpb.AcquireCoinRequest(
            ecoin_id=chain.ecoin_id.hex(), proof_index=35, proof_word=chain.word(35)
        ),
        metadata=bearer_metadata(reg.vendor_token),
    )
    assert reply.WhichOneof("result") == "handoff"
    request = vendor_pb2.HandOffRequest(grant=reply.handoff.grant)
    with grpc.insecure_channel(daily.grpc_address) as channel:
        stub = vendor_pb2_grpc.VendorStub(channel)
        answers = [
            stub.HandOff(
                request,
                metadata=sign_call(key, "third", HANDOFF, request, clock.now_ms()),
                timeout=10,
            )
            for _ in range(2)
        ]
    first, repeated = answers
    assert repeated.coin_index == first.coin_index
    assert repeated.window_credit == first.window_credit
    ci = open_envelope(first.coin_index, pb.CoinIndex, daily_key)
    assert (ci.index, ci.payword, ci.to_vendor) == (30, chain.word(30), "third")
    assert first.HasField("window_credit")
    credit = open_envelope(first.window_credit, pb.WindowCredit, daily_key)
    assert (credit.window_top, credit.consumed_index, credit.refund_units, credit.reason) == (
        30,
        10,
        20,
        "handoff",
    )
    # The window closed in the same step: the cookie pays nothing now.
    assert click(daily.web_url, "1", handle).status_code == 402


def test_the_dashboard_lists_open_windows(start, reader, tmp_path) -> None:
    password = tmp_path / "password.txt"
    password.write_text("ink and paper, 1896\n")
    daily = start("daily-hash", dashboard_password_file=password)
    http = requests.Session()
    page = http.get(daily.web_url + "/dashboard/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    login = http.post(
        daily.web_url + "/dashboard/login",
        data={"csrf_token": token.group(1), "password": "ink and paper, 1896"},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 303
    empty = http.get(daily.web_url + "/dashboard", timeout=30).text
    assert "None yet" in empty.split('id="windows"', 1)[1]

    chain = reader.buy(300)
    handle = handle_of(open_window(daily.web_url, chain, 0, 40))
    assert click(daily.web_url, "7", handle).status_code == 200
    text = http.get(daily.web_url + "/dashboard", timeout=30).text
    table = text.split('id="windows"', 1)[1].split("</table>", 1)[0]
    row = table.split(f'title="{chain.ecoin_id.hex()}"', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[:5] == ["1", "0&ndash;40", "10 / 40", "30", "€0.30"], cells
    assert handle not in text  # the handle is never shown (nor stored)
    assert close(daily.web_url, handle).status_code == 200
    later = http.get(daily.web_url + "/dashboard", timeout=30).text
    assert "None yet" in later.split('id="windows"', 1)[1]
