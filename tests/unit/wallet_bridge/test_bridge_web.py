"""The bridge's HTTP layer (Flask test client) over a fake bridge, and its helpers.

What is checked here is who may ask: the Host header, the Origin header,
the content type, sizes, CORS headers; the fake records every call that
got through, so a refused request provably reached no use case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask.testing import FlaskClient

from ewallet_client import bridge as bridge_mod
from ewallet_client.bridge import (
    MAX_BODY_BYTES,
    BridgeCaps,
    check_bridge_address,
    create_app,
    normalize_origin,
    utc_day,
)
from ewallet_client.store import ApprovedOrigin
from netpay.errors import InvalidArgument, LimitExceeded

HOST = "127.0.0.1:8790"
PAGE = "http://127.0.0.1:8001"
OTHER = "http://127.0.0.1:8002"


@dataclass
class FakeBridge:
    origins: set[str] = field(default_factory=lambda: {PAGE + ""})
    calls: list[tuple[str, str]] = field(default_factory=list)
    raise_next: Exception | None = None

    def approved(self, origin: str) -> ApprovedOrigin | None:
        return ApprovedOrigin(origin, None, None, 0) if origin in self.origins else None

    def authorize(self, origin: str, url: str) -> dict[str, object]:
        self.calls.append((origin, url))
        if self.raise_next is not None:
            err, self.raise_next = self.raise_next, None
            raise err
        return {"authorization": "NetPay x", "amount": 5}

    def status(self, origin: str) -> dict[str, object]:
        return {"approved": True, "origin": origin}


@pytest.fixture
def fake() -> FakeBridge:
    # Origins are stored normalised (explicit port); PAGE already has one.
    return FakeBridge(origins={normalize_origin(PAGE)})


@pytest.fixture
def client(fake: FakeBridge) -> FlaskClient:
    return create_app(fake, allowed_hosts=[HOST]).test_client()


def _post(
    client: FlaskClient,
    body: Any = None,
    *,
    origin: str | None = PAGE,
    host: str = HOST,
    content_type: str = "application/json",
    data: bytes | None = None,
) -> Any:
    headers = {"Host": host}
    if origin is not None:
        headers["Origin"] = origin
    if data is None:
        data = json.dumps(body if body is not None else {"url": PAGE + "/articles/1"}).encode()
    return client.post("/v1/authorize", data=data, headers=headers, content_type=content_type)


def test_an_approved_page_gets_a_header_with_cors(client: FlaskClient, fake: FakeBridge) -> None:
    resp = _post(client)
    assert resp.status_code == 200
    assert resp.get_json() == {"authorization": "NetPay x", "amount": 5}
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Origin" in resp.headers["Vary"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert fake.calls == [("http://127.0.0.1:8001", PAGE + "/articles/1")]


@pytest.mark.parametrize(
    "origin",
    [None, "", "null", OTHER, "https://evil.example", "http://127.0.0.1:8001/path", "x" * 400],
)
def test_no_or_unapproved_origin_is_refused_without_cors(
    client: FlaskClient, fake: FakeBridge, origin: str | None
) -> None:
    resp = _post(client, origin=origin)
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "permission_denied"
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert fake.calls == []


@pytest.mark.parametrize(
    "host", ["evil.example:8790", "localhost:8790", "127.0.0.1:8791", "127.0.0.1", ""]
)
def test_a_foreign_host_header_is_refused(client: FlaskClient, fake: FakeBridge, host: str) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 still sends Host: evil.example."""
    resp = _post(client, host=host)
    assert resp.status_code == 403
    assert "Host" in resp.get_json()["detail"]
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert fake.calls == []
    # The status and the preflight are guarded the same way.
    assert client.get("/v1/status", headers={"Host": host, "Origin": PAGE}).status_code == 403
    pre = client.options("/v1/authorize", headers={"Host": host, "Origin": PAGE})
    assert pre.status_code == 403 and "Access-Control-Allow-Origin" not in pre.headers


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_simple_request_content_types_are_refused(
    client: FlaskClient, fake: FakeBridge, content_type: str
) -> None:
    """A cross-site form or a no-cors fetch can send these without a preflight."""
    resp = _post(client, content_type=content_type)
    assert resp.status_code == 415
    assert fake.calls == []


def test_json_with_a_charset_is_accepted(client: FlaskClient) -> None:
    assert _post(client, content_type="application/json; charset=utf-8").status_code == 200


def test_size_and_shape_limits(client: FlaskClient, fake: FakeBridge) -> None:
    big = json.dumps({"url": PAGE + "/" + "a" * MAX_BODY_BYTES}).encode()
    assert _post(client, data=big).status_code == 413
    assert _post(client, data=b"not json").status_code == 400
    assert _post(client, body=["a list"]).status_code == 400
    assert _post(client, body={"url": 7}).status_code == 400
    assert _post(client, body={}).status_code == 400
    assert fake.calls == []


def test_errors_keep_their_status_and_code(client: FlaskClient, fake: FakeBridge) -> None:
    fake.raise_next = LimitExceeded("over the daily cap")
    resp = _post(client)
    assert resp.status_code == 402
    assert resp.get_json() == {"error": "limit_exceeded", "detail": "over the daily cap"}
    # An approved page can read its refusals.
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    fake.raise_next = RuntimeError("boom")
    resp = _post(client)
    assert resp.status_code == 500
    assert resp.get_json() == {"error": "internal", "detail": "internal error"}


def test_preflight_only_for_approved_origins(client: FlaskClient) -> None:
    headers = {
        "Host": HOST,
        "Origin": PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
        "Access-Control-Request-Private-Network": "true",
    }
    resp = client.options("/v1/authorize", headers=headers)
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    assert resp.headers["Access-Control-Allow-Methods"] == "POST"
    assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert resp.headers["Access-Control-Allow-Private-Network"] == "true"
    assert "Origin" in resp.headers["Vary"]
    resp = client.options("/v1/authorize", headers={**headers, "Origin": OTHER})
    assert resp.status_code == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Access-Control-Allow-Private-Network" not in resp.headers
    resp = client.options("/v1/status", headers=headers)
    assert resp.status_code == 204 and resp.headers["Access-Control-Allow-Methods"] == "GET"


def test_status(client: FlaskClient) -> None:
    resp = client.get("/v1/status", headers={"Host": HOST, "Origin": PAGE})
    assert resp.status_code == 200
    assert resp.get_json() == {"approved": True, "origin": "http://127.0.0.1:8001"}
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE
    resp = client.get("/v1/status", headers={"Host": HOST, "Origin": OTHER})
    assert resp.status_code == 200 and resp.get_json() == {"approved": False}
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert client.get("/v1/status", headers={"Host": HOST}).status_code == 403


def test_other_paths_and_methods(client: FlaskClient) -> None:
    resp = client.get("/v1/authorize", headers={"Host": HOST, "Origin": PAGE})
    assert resp.status_code == 405 and resp.get_json()["error"] == "method_not_allowed"
    resp = client.get("/", headers={"Host": HOST, "Origin": PAGE})
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"


# -- helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.2:8790", ("127.0.0.2", 8790)),
        ("[::1]:8790", ("::1", 8790)),
    ],
)
def test_loopback_listen_addresses(address: str, expected: tuple[str, int]) -> None:
    assert check_bridge_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0:8790",
        "[::]:8790",
        "192.168.1.2:8790",
        "localhost:8790",
        "example.com:8790",
        "127.0.0.1",
        "127.0.0.1:99999",
        "127.0.0.1:x",
        ":8790",
    ],
)
def test_every_other_listen_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidArgument):
        check_bridge_address(address)


def test_normalize_origin() -> None:
    assert normalize_origin("https://News.Example/articles/1?x") == "https://news.example:443"
    assert normalize_origin("http://127.0.0.1:8001") == "http://127.0.0.1:8001"
    assert normalize_origin("http://localhost/") == "http://localhost:80"
    for bad in (
        "http://news.example",  # plain HTTP outside loopback
        "ftp://127.0.0.1",
        "null",
        "",
        "https://user:pw@news.example",
        "https://" + "a" * 400 + ".example",
    ):
        with pytest.raises(InvalidArgument):
            normalize_origin(bad)


def test_caps_and_days() -> None:
    assert utc_day(0) == 0 and utc_day(86_399_999) == 0 and utc_day(86_400_000) == 1
    with pytest.raises(InvalidArgument):
        BridgeCaps(max_click_minor=0)
    with pytest.raises(InvalidArgument):
        BridgeCaps(max_day_minor=2**60)
    assert bridge_mod.BRIDGE_SCRIPT.is_file()
    text = bridge_mod.BRIDGE_SCRIPT.read_text()
    assert "NetPay" in text and "/v1/authorize" in text and "import " not in text
