"""The browser bridge against a real broker and real newspapers: who can spend, how much.

Every refusal is checked to move nothing: the wallet's coin index and the
bridge's spending of the day stay where they were.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests

from ewallet_client.bridge import BridgeCaps, utc_day
from tests.fakes.wallet_store import shortcuts


def _spent(world: Any, vendor_id: str) -> dict[str, tuple[int, int]]:
    day = utc_day(world.wallet.clock.now_ms())
    spent: dict[str, tuple[int, int]] = shortcuts(world.wallet).bridge_spending(
        world.origin(vendor_id), day
    )
    return spent


def test_an_approved_newspaper_page_pays_an_article(world: Any) -> None:
    world.approve("daily")
    art = world.article("daily")
    resp = world.post(world.bridge.url, art["url"], origin=world.origin("daily"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["authorization"].startswith("NetPay ")
    assert body["amount"] == art["amount"] and body["currency"] == art["currency"]
    assert body["words_left"] == 1000 - art["amount"]
    assert resp.headers["Access-Control-Allow-Origin"] == world.origin("daily")
    assert world.index() == art["amount"]
    assert _spent(world, "daily") == {"EUR": (art["amount"], 1)}
    # The page fetches the article itself with the header: the vendor accepts it.
    paid = requests.get(art["url"], headers={"Authorization": body["authorization"]}, timeout=10)
    assert paid.status_code == 200
    assert paid.headers["NetPay-Balance"] == str(body["words_left"])
    assert paid.headers["NetPay-Receipt"]

    status = requests.get(
        world.bridge.url + "/v1/status", headers={"Origin": world.origin("daily")}, timeout=10
    ).json()
    assert status["approved"] is True
    assert status["max_click_minor"] == 100 and status["max_day_minor"] == 500
    assert status["spent_today_minor"] == {"EUR": art["amount"]}
    assert status["clicks_today"] == 1
    assert status["wallet_minor"] == {"EUR": 1000 - art["amount"]}
    assert "ecoin" not in str(status)


def test_unapproved_origins_and_pages_without_origin_spend_nothing(world: Any) -> None:
    world.approve("gazette")
    art = world.article("daily")
    for origin in (world.origin("daily"), None, "null", "https://evil.example"):
        resp = world.post(world.bridge.url, art["url"], origin=origin)
        assert resp.status_code == 403, origin
        assert resp.json()["error"] == "permission_denied"
        assert "Access-Control-Allow-Origin" not in resp.headers
    status = requests.get(
        world.bridge.url + "/v1/status", headers={"Origin": world.origin("daily")}, timeout=10
    )
    assert status.json() == {"approved": False}
    assert "Access-Control-Allow-Origin" not in status.headers
    assert world.index() == 0


def test_an_approved_page_cannot_pay_another_sites_article(world: Any) -> None:
    world.approve("daily")
    world.approve("gazette")
    other = world.article("gazette")
    resp = world.post(world.bridge.url, other["url"], origin=world.origin("daily"))
    assert resp.status_code == 403
    assert "its own site" in resp.json()["detail"]
    assert world.index() == 0
    assert _spent(world, "daily") == {} and _spent(world, "gazette") == {}


def test_the_vendor_certificate_must_certify_the_page_origin(world: Any) -> None:
    """The liar serves from its web_url but the broker certified another origin."""
    world.approve("liar")
    art = world.article("liar")
    resp = world.post(world.bridge.url, art["url"], origin=world.origin("liar"))
    assert resp.status_code == 403
    assert "certified" in resp.json()["detail"]
    assert world.index() == 0
    assert _spent(world, "liar") == {}


def test_a_spoofed_host_header_is_refused(world: Any) -> None:
    """DNS rebinding: a page of evil.example re-pointed at 127.0.0.1 sends its own Host."""
    world.approve("daily")
    art = world.article("daily")
    port = urlsplit(world.bridge.url).port
    for host in (f"evil.example:{port}", f"localhost:{port}", "127.0.0.1"):
        resp = world.post(world.bridge.url, art["url"], origin=world.origin("daily"), host=host)
        assert resp.status_code == 403, host
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert world.index() == 0


def test_a_simple_cross_site_post_is_refused(world: Any) -> None:
    world.approve("daily")
    art = world.article("daily")
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        resp = world.post(
            world.bridge.url,
            art["url"],
            origin=world.origin("daily"),
            content_type=ctype,
            data=f'{{"url": "{art["url"]}"}}'.encode(),
        )
        assert resp.status_code == 415
    resp = world.post(
        world.bridge.url, art["url"], origin=world.origin("daily"), data=b"{" + b" " * 5000 + b"}"
    )
    assert resp.status_code == 413
    long_url = world.origin("daily") + "/articles/" + "a" * 2100
    resp = world.post(world.bridge.url, long_url, origin=world.origin("daily"))
    assert resp.status_code == 400
    assert world.index() == 0


def test_a_free_article_is_not_paid(world: Any) -> None:
    world.approve("daily")
    resp = world.post(world.bridge.url, world.free_article("daily"), origin=world.origin("daily"))
    assert resp.status_code == 409 and resp.json()["error"] == "failed_precondition"
    assert world.index() == 0


def test_the_per_click_cap(world: Any) -> None:
    art = world.article("daily", rank=-1)
    world.approve("daily", max_click_minor=art["amount"] - 1)
    resp = world.post(world.bridge.url, art["url"], origin=world.origin("daily"))
    assert resp.status_code == 402 and resp.json()["error"] == "limit_exceeded"
    assert resp.headers["Access-Control-Allow-Origin"] == world.origin("daily")
    assert world.index() == 0
    # The bridge's own cap applies when the origin sets none.
    world.approve("daily")
    low = world.start_bridge(BridgeCaps(max_click_minor=art["amount"] - 1, max_day_minor=500))
    resp = world.post(low.url, art["url"], origin=world.origin("daily"))
    assert resp.status_code == 402 and resp.json()["error"] == "limit_exceeded"
    assert world.index() == 0
    assert world.post(world.bridge.url, art["url"], origin=world.origin("daily")).ok
    assert world.index() == art["amount"]


def test_the_daily_cap(world: Any) -> None:
    art = world.article("daily")
    price = art["amount"]
    world.approve("daily", max_day_minor=3 * price)
    for _ in range(3):
        assert world.post(world.bridge.url, art["url"], origin=world.origin("daily")).ok
    resp = world.post(world.bridge.url, art["url"], origin=world.origin("daily"))
    assert resp.status_code == 402 and resp.json()["error"] == "limit_exceeded"
    assert world.index() == 3 * price
    assert _spent(world, "daily") == {"EUR": (3 * price, 3)}
    # Another approved newspaper has its own budget.
    world.approve("gazette")
    other = world.article("gazette")
    assert world.post(world.bridge.url, other["url"], origin=world.origin("gazette")).ok


def test_many_concurrent_requests_never_pass_the_daily_cap(world: Any) -> None:
    """Two bridges on one wallet directory, 16 page requests at once, room for 3 clicks."""
    art = world.article("daily")
    price = art["amount"]
    world.approve("daily", max_day_minor=3 * price + price - 1)
    second = world.start_bridge()
    start = threading.Barrier(16)
    statuses: list[int] = []
    lock = threading.Lock()

    def click(bridge_url: str) -> None:
        start.wait()
        resp = world.post(bridge_url, art["url"], origin=world.origin("daily"))
        with lock:
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=click, args=(b.url,)) for b in [world.bridge, second] * 8]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [200] * 3 + [402] * 13
    assert world.index() == 3 * price
    assert _spent(world, "daily") == {"EUR": (3 * price, 3)}


def test_a_revoked_origin_is_refused(world: Any) -> None:
    world.approve("daily")
    art = world.article("daily")
    assert world.post(world.bridge.url, art["url"], origin=world.origin("daily")).ok
    assert shortcuts(world.wallet).revoke_origin(world.origin("daily"))
    resp = world.post(world.bridge.url, art["url"], origin=world.origin("daily"))
    assert resp.status_code == 403
    assert world.index() == art["amount"]
