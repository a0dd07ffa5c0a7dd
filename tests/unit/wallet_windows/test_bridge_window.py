"""``POST /v1/window`` on a real bridge over a real wallet, against the fake newspaper."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from ewallet_client.bridge import BridgeCaps, BridgeHandle, start_bridge
from ewallet_client.wallet import Wallet
from netpay.clock import FakeClock
from netpay.header import parse_authorization
from tests.fakes.broker import FakeBroker
from tests.fakes.vendor import FakeVendor
from tests.fakes.wallet_store import shortcuts


@pytest.fixture
def bridge(
    wallet: Wallet, wallet_dir: Path, clock: FakeClock, broker: FakeBroker
) -> Iterator[BridgeHandle]:
    handle = start_bridge(
        Wallet(wallet_dir, clock=clock, broker_factory=broker.factory),
        listen="127.0.0.1:0",
        caps=BridgeCaps(max_click_minor=10, max_day_minor=100),
        close_wallet=True,
    )
    yield handle
    handle.stop()


def _approve(wallet: Wallet, v: FakeVendor, **caps: int | None) -> None:
    shortcuts(wallet).approve_origin(
        v.url,
        max_click_minor=caps.get("max_click_minor"),
        max_day_minor=caps.get("max_day_minor"),
        now_ms=wallet.clock.now_ms(),
    )


def _post(
    bridge: BridgeHandle,
    body: object,
    *,
    origin: str | None,
    host: str | None = None,
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin
    if host is not None:
        headers["Host"] = host
    return requests.post(
        bridge.url + "/v1/window", data=json.dumps(body), headers=headers, timeout=10
    )


def _index(wallet: Wallet) -> int:
    return sum(c.index for c in wallet.coins())


def test_an_approved_page_gets_a_window_header_and_opens_it_itself(
    wallet: Wallet, vendor: FakeVendor, bridge: BridgeHandle
) -> None:
    _approve(wallet, vendor)
    resp = _post(bridge, {"url": vendor.url + "/articles/1", "units": 30}, origin=vendor.url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Access-Control-Allow-Origin"] == vendor.url
    body = resp.json()
    assert body["window_url"] == vendor.url + "/netpay/window"
    assert (body["units"], body["amount"], body["currency"]) == (30, 30, "EUR")
    assert body["vendor_id"] == "daily" and body["words_left"] == 970
    cred = parse_authorization(body["authorization"])
    assert (cred.prev, cred.index, cred.window) == (0, 30, 30)
    assert _index(wallet) == 30
    # The page POSTs it: the browser (here: this client) gets the cookie, not the wallet.
    opened = requests.post(
        body["window_url"],
        headers={"Authorization": body["authorization"], "Accept": "application/json"},
        timeout=10,
    )
    assert opened.status_code == 200
    assert opened.json()["window_top"] == 30
    assert "netpay_window=" in opened.headers["Set-Cookie"]
    assert wallet.windows() == []
    assert shortcuts(wallet).bridge_spending(vendor.url, wallet.clock.now_ms() // 86_400_000) == {
        "EUR": (30, 1)
    }


def test_window_caps(wallet: Wallet, vendor: FakeVendor, bridge: BridgeHandle) -> None:
    _approve(wallet, vendor, max_day_minor=50)
    url = vendor.url + "/articles/1"
    assert _post(bridge, {"url": url, "units": 40}, origin=vendor.url).status_code == 200
    refused = _post(bridge, {"url": url, "units": 20}, origin=vendor.url)
    assert refused.status_code == 402 and refused.json()["error"] == "limit_exceeded"
    assert _index(wallet) == 40
    # The per-click cap applies to the price the window's clicks pay.
    _approve(wallet, vendor, max_click_minor=4)
    refused = _post(bridge, {"url": url, "units": 1}, origin=vendor.url)
    assert refused.status_code == 402 and refused.json()["error"] == "limit_exceeded"
    assert "above the cap" in refused.json()["detail"]
    assert _index(wallet) == 40


@pytest.mark.parametrize("units", [0, -3, 501, "5", True, None, 2.5])
def test_units_must_be_1_to_500(
    wallet: Wallet, vendor: FakeVendor, bridge: BridgeHandle, units: object
) -> None:
    _approve(wallet, vendor)
    resp = _post(bridge, {"url": vendor.url + "/articles/1", "units": units}, origin=vendor.url)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_argument"
    assert _index(wallet) == 0 and vendor.requests == []


def test_origin_refusals(
    wallet: Wallet,
    vendor: FakeVendor,
    bridge: BridgeHandle,
    start_vendor: Callable[..., FakeVendor],
) -> None:
    other = start_vendor("gazette")
    _approve(wallet, vendor)
    url = vendor.url + "/articles/1"
    for origin in (None, other.url, "null", "http://evil.example"):
        resp = _post(bridge, {"url": url, "units": 5}, origin=origin)
        assert resp.status_code == 403, origin
        assert "Access-Control-Allow-Origin" not in resp.headers
    # An approved page asking for another site's window.
    resp = _post(bridge, {"url": other.url + "/articles/1", "units": 5}, origin=vendor.url)
    assert resp.status_code == 403 and resp.json()["error"] == "permission_denied"
    # A foreign Host header (DNS rebinding).
    port = bridge.url.rsplit(":", 1)[1]
    resp = _post(bridge, {"url": url, "units": 5}, origin=vendor.url, host=f"localhost:{port}")
    assert resp.status_code == 403
    assert _index(wallet) == 0
    assert vendor.requests == [] and other.requests == []


def test_preflight_and_content_type(
    wallet: Wallet, vendor: FakeVendor, bridge: BridgeHandle
) -> None:
    _approve(wallet, vendor)
    pre = requests.options(
        bridge.url + "/v1/window",
        headers={"Origin": vendor.url, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == vendor.url
    assert pre.headers["Access-Control-Allow-Methods"] == "POST"
    form = requests.post(
        bridge.url + "/v1/window",
        data="url=x&units=5",
        headers={"Origin": vendor.url, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert form.status_code == 415
    assert _index(wallet) == 0
