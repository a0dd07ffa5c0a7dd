"""A real broker (gRPC on 127.0.0.1:0) and real vendors in process (the site
over loopback, SQLite under tmp_path), reused from tests/integration/vendor,
plus the HTTP helpers of the window tests (explicit Cookie headers)."""

from __future__ import annotations

import requests

from netpay.chain import Chain
from netpay.encoding import b64url_decode
from netpay.envelope import open_envelope
from netpay.header import Credentials, format_authorization
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from tests.integration.vendor.conftest import (  # noqa: F401 (fixtures, re-exported)
    Reader,
    StartVendor,
    broker,
    broker_dir,
    broker_stub,
    clock,
    reader,
    start,
)

JSON = {"Accept": "application/json"}
COOKIE = "netpay_window"


def pay_header(chain: Chain, prev: int, index: int, window: int | None = None) -> str:
    return format_authorization(
        Credentials(chain.ecoin_id.hex(), prev, index, chain.word(index), window=window)
    )


def open_window(web_url: str, chain: Chain, prev: int, units: int) -> requests.Response:
    return requests.post(
        web_url + "/netpay/window",
        headers={**JSON, "Authorization": pay_header(chain, prev, prev + units, units)},
        timeout=30,
    )


def handle_of(resp: requests.Response) -> str:
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE + "="), cookie
    return cookie.split(";", 1)[0].split("=", 1)[1]


def click(web_url: str, article: str, handle: str, **headers: str) -> requests.Response:
    return requests.get(
        f"{web_url}/articles/{article}",
        headers={**JSON, "Cookie": f"{COOKIE}={handle}", **headers},
        timeout=30,
    )


def close(web_url: str, handle: str) -> requests.Response:
    return requests.post(
        web_url + "/netpay/window/close",
        headers={**JSON, "Cookie": f"{COOKIE}={handle}"},
        timeout=30,
    )


def vendor_key(stub: broker_pb2_grpc.BrokerStub, broker_key: bytes, vendor_id: str) -> bytes:
    """The vendor's public key as the broker certifies it."""
    reply = stub.GetVendorCertificate(bpb.GetVendorCertificateRequest(vendor_id=vendor_id))
    cert = open_envelope(reply.certificate, pb.VendorCertificate, broker_key)
    assert cert.vendor_id == vendor_id
    return bytes(cert.public_key)


def receipt(resp: requests.Response, key: bytes) -> pb.Receipt:
    env = pb.Envelope.FromString(b64url_decode(resp.headers["NetPay-Receipt"]))
    return open_envelope(env, pb.Receipt, key)
