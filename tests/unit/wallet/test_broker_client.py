"""BrokerClient over a real gRPC channel: bearer token, typed errors, unavailability."""

from __future__ import annotations

from typing import Any

import pytest

from ewallet_client.broker_client import BrokerClient
from netpay.errors import (
    AlreadyExists,
    BrokerUnavailable,
    Insufficient,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb


def test_calls_and_typed_errors(grpc_broker: str, broker: Any) -> None:
    with BrokerClient(grpc_broker) as client:
        info = client.get_info()
        assert (info.broker_id, info.public_key) == ("broker", broker.key.public_key)
        assert client.register_reader("ann", "pw") == "r-1"
        with pytest.raises(AlreadyExists):
            client.register_reader("ann", "pw")
        with pytest.raises(Unauthenticated):
            client.login("ann", "nope")
        token = client.login("ann", "pw").token
        assert token in broker.tokens
        req = broker_pb2.BuyCoinRequest(
            request_id="q1",
            ecoin_id="ab" * 16,
            root=b"\x01" * 32,
            n=20_000,
            unit_value_minor=1,
            currency="EUR",
            wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
        )
        with pytest.raises(Insufficient):
            client.buy_coin(token, req)
        with pytest.raises(Unauthenticated):
            client.buy_coin("bad-token", req)
        req.n = 10
        resp = client.buy_coin(token, req)
        assert resp.amount_minor == 10
        assert [c.touchstone.payload for c in client.list_coins(token)] == [resp.touchstone.payload]
        assert client.get_account(token).balances[0].balance_minor == 10_000 - 10
        with pytest.raises(NotFound):
            client.get_vendor_certificate("nobody")


def test_an_unreachable_broker_is_broker_unavailable() -> None:
    with BrokerClient("127.0.0.1:1", timeout_s=2) as client, pytest.raises(BrokerUnavailable):
        client.get_info()


def test_a_bad_address_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        BrokerClient("no-port")
