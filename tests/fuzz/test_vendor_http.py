"""Hostile Authorization headers at a real vendor: never a 500, never a spend without a 200.

Mutations of a genuine header (hypothesis) are sent over HTTP to a vendor
that holds the coin; whatever comes back must be one of the protocol's
statuses, and the coin's index moves only when the vendor answered 200.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from netpay.chain import Chain
from netpay.header import Credentials, format_authorization
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from vendor.server import VendorConfig, VendorHandle, start_vendor

ALLOWED = {200, 400, 402, 409, 503}
N = 5_000


@dataclass
class Target:
    broker: BrokerHandle
    vendor: VendorHandle
    chain: Chain
    http: requests.Session

    @property
    def ecoin_id(self) -> str:
        return self.chain.ecoin_id.hex()

    def index(self) -> int:
        stored = self.vendor.services.coin(self.ecoin_id)
        assert stored is not None
        return stored.view.index


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    broker = start_broker(BrokerConfig(data_dir=tmp / "b", demo_deposit_minor=N))
    vendor = start_vendor(
        VendorConfig(
            data_dir=tmp / "v",
            broker_addr=broker.grpc_address,
            enroll_token=add_vendor(tmp / "b", "fuzzed"),
            workers=0,
            background=False,
        )
    )
    try:
        with grpc.insecure_channel(broker.grpc_address) as channel:
            stub = broker_pb2_grpc.BrokerStub(channel)
            stub.RegisterReader(
                broker_pb2.RegisterReaderRequest(username="fuzz", password="fuzz-password")
            )
            token = stub.Login(
                broker_pb2.LoginRequest(username="fuzz", password="fuzz-password")
            ).token
            ecoin = secrets.token_bytes(16)
            chain = Chain.make(ecoin, N, secrets.token_bytes(32), pebble_every=16)
            stub.BuyCoin(
                broker_pb2.BuyCoinRequest(
                    request_id="fuzz",
                    ecoin_id=ecoin.hex(),
                    root=chain.root,
                    n=N,
                    unit_value_minor=1,
                    currency="EUR",
                    wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
                ),
                metadata=bearer_metadata(token),
            )
        t = Target(broker, vendor, chain, requests.Session())
        # The vendor acquires the coin with one genuine click.
        header = format_authorization(Credentials(t.ecoin_id, 0, 1, chain.word(1)))
        assert (
            t.http.get(
                vendor.web_url + "/articles/1", headers={"Authorization": header}
            ).status_code
            == 200
        )
        yield t
        t.http.close()
    finally:
        vendor.stop()
        broker.stop()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_headers_never_500_and_never_spend_silently(
    target: Target, data: st.DataObject
) -> None:
    s = target.index()
    genuine = format_authorization(Credentials(target.ecoin_id, s, s + 1, target.chain.word(s + 1)))
    kind = data.draw(st.sampled_from(["mutate", "numbers", "garbage"]))
    if kind == "mutate":
        pos = data.draw(st.integers(0, len(genuine) - 1))
        header = genuine[:pos] + data.draw(st.text(max_size=4)) + genuine[pos + 1 :]
    elif kind == "numbers":
        prev = data.draw(st.integers(0, N + 5))
        index = data.draw(st.integers(0, N + 5))
        word = (
            target.chain.word(min(index, N))
            if data.draw(st.booleans())
            else secrets.token_bytes(32)
        )
        header = format_authorization(Credentials(target.ecoin_id, prev, index, word))
    else:
        header = "NetPay " + data.draw(st.text(max_size=200))
    article = data.draw(st.sampled_from(["1", "2", "4", "12", "free", "nope"]))
    try:
        resp = target.http.get(
            f"{target.vendor.web_url}/articles/{article}",
            headers={
                "Authorization": header.encode("utf-8", "surrogateescape"),
                "Accept": "application/json",
            },
            timeout=30,
        )
    except (ValueError, requests.exceptions.InvalidHeader):
        event("not a valid HTTP header")
        return  # not even a valid HTTP header: nothing was sent
    event(f"status {resp.status_code}")
    assert resp.status_code in ALLOWED | {404}, (resp.status_code, header, resp.text[:300])
    if resp.status_code == 404:
        assert article == "nope"
    after = target.index()
    if resp.status_code == 200 and article != "free" and "NetPay-Receipt" in resp.headers:
        assert after > s
    else:
        assert after == s, (resp.status_code, header)
    if resp.status_code >= 400 and resp.status_code != 404:
        assert resp.json()["error"]
