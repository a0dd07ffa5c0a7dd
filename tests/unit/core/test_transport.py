"""gRPC plumbing: error mapping over a real server, health, reflection, call signatures."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from netpay.encoding import b64url_encode, b64url_exact
from netpay.envelope import SigningKey
from netpay.errors import (
    AlreadySpent,
    BrokerUnavailable,
    CoinBusy,
    InvalidArgument,
    NetPayError,
    PermissionDenied,
    Unauthenticated,
)
from netpay.transport.auth import bearer_metadata, bearer_token, sign_call, verify_call
from netpay.transport.server import GrpcServer, check_listen_address, create_grpc_server
from netpay.transport.status import from_rpc_error, maps_errors
from netpay.v1 import vendor_pb2, vendor_pb2_grpc
from tests.leaks import error_info


class RaisingVendor(vendor_pb2_grpc.VendorServicer):
    def __init__(self) -> None:
        self.error: Exception | None = None

    @maps_errors
    def GetInfo(
        self, request: vendor_pb2.VendorGetInfoRequest, context: grpc.ServicerContext
    ) -> vendor_pb2.VendorInfo:
        if self.error is not None:
            raise self.error
        return vendor_pb2.VendorInfo(vendor_id="v-1")


@pytest.fixture
def served() -> Iterator[tuple[RaisingVendor, GrpcServer, grpc.Channel]]:
    servicer = RaisingVendor()
    server = create_grpc_server(
        "127.0.0.1:0",
        [lambda s: vendor_pb2_grpc.add_VendorServicer_to_server(servicer, s)],
        ["netpay.v1.Vendor"],
    )
    channel = grpc.insecure_channel(server.address)
    try:
        yield servicer, server, channel
    finally:
        channel.close()
        server.stop(0)


def _call_error(channel: grpc.Channel) -> NetPayError:
    with pytest.raises(grpc.RpcError) as info:
        vendor_pb2_grpc.VendorStub(channel).GetInfo(vendor_pb2.VendorGetInfoRequest(), timeout=5)
    return from_rpc_error(info.value)


def test_error_info_carries_index_and_seen_never_a_word(
    served: tuple[RaisingVendor, GrpcServer, grpc.Channel],
) -> None:
    servicer, _, channel = served
    servicer.error = AlreadySpent("spent", index=7, seen=b"\x07" * 32)
    with pytest.raises(grpc.RpcError) as info:
        vendor_pb2_grpc.VendorStub(channel).GetInfo(vendor_pb2.VendorGetInfoRequest(), timeout=5)
    details = error_info(info.value)
    assert details is not None and details.reason == "already_spent"
    assert dict(details.metadata) == {"index": "7", "seen": b64url_encode(b"\x07" * 32)}


@pytest.mark.parametrize("seen", ["", "!!", "AAAA", "A" * 44, "A" * 500])
def test_a_seen_that_is_not_32_bytes_is_dropped(seen: str) -> None:
    info = error_details_pb2.ErrorInfo(reason="already_spent", domain="netpay.v1")
    info.metadata.update({"index": "7", "seen": seen})
    assert b64url_exact(info.metadata["seen"], 32) is None


def test_typed_errors_survive_the_wire(
    served: tuple[RaisingVendor, GrpcServer, grpc.Channel],
) -> None:
    servicer, _, channel = served
    assert (
        vendor_pb2_grpc.VendorStub(channel).GetInfo(vendor_pb2.VendorGetInfoRequest()).vendor_id
        == "v-1"
    )
    servicer.error = AlreadySpent("spent", index=7, seen=b"\x07" * 32)
    err = _call_error(channel)
    assert isinstance(err, AlreadySpent)
    assert (err.index, err.seen, err.detail) == (7, b"\x07" * 32, "spent")
    servicer.error = CoinBusy("busy", retry_after_s=3)
    err = _call_error(channel)
    assert isinstance(err, CoinBusy) and err.retry_after_s == 3
    servicer.error = RuntimeError("secret internals")
    err = _call_error(channel)
    assert type(err) is NetPayError and "secret" not in err.detail


def test_unreachable_server_is_typed_unavailable() -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")
    with pytest.raises(grpc.RpcError) as info:
        vendor_pb2_grpc.VendorStub(channel).GetInfo(vendor_pb2.VendorGetInfoRequest(), timeout=2)
    channel.close()
    assert isinstance(from_rpc_error(info.value, unavailable=BrokerUnavailable), BrokerUnavailable)


def test_health_and_reflection(served: tuple[RaisingVendor, GrpcServer, grpc.Channel]) -> None:
    _, _, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "netpay.v1.Vendor"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(
        refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"netpay.v1.Vendor", "grpc.health.v1.Health"} <= names


def test_plaintext_listener_only_on_loopback() -> None:
    check_listen_address("127.0.0.1:0", insecure=False)
    check_listen_address("[::1]:0", insecure=False)
    check_listen_address("localhost:80", insecure=False)
    with pytest.raises(InvalidArgument, match="--insecure"):
        check_listen_address("0.0.0.0:7000", insecure=False)
    check_listen_address("0.0.0.0:7000", insecure=True)


def test_bearer_metadata() -> None:
    assert bearer_token(bearer_metadata("tok")) == "tok"
    with pytest.raises(Unauthenticated):
        bearer_token([("authorization", "Basic x")])
    with pytest.raises(Unauthenticated):
        bearer_token([])


def test_call_signature() -> None:
    key = SigningKey.generate()
    request = vendor_pb2.HandOffRequest()
    request.grant.payload = b"grant"
    method = "/netpay.v1.Vendor/HandOff"
    meta = sign_call(key, "v-2", method, request, 1_000_000)
    keys = {"v-2": key.public_key}

    def verify(now_ms: int, req: vendor_pb2.HandOffRequest, m: str = method) -> str:
        return verify_call(meta, m, req, now_ms=now_ms, max_skew_s=5, key_for=keys.__getitem__)

    assert verify(1_004_000, request) == "v-2"
    with pytest.raises(Unauthenticated, match="too far"):
        verify(1_006_000, request)
    other = vendor_pb2.HandOffRequest()
    other.grant.payload = b"other"
    with pytest.raises(PermissionDenied):
        verify(1_000_000, other)
    with pytest.raises(PermissionDenied):
        verify(1_000_000, request, "/netpay.v1.Vendor/GetInfo")
    keys["v-2"] = SigningKey.generate().public_key
    with pytest.raises(PermissionDenied):
        verify(1_000_000, request)
    with pytest.raises(Unauthenticated, match="not signed"):
        verify_call([], method, request, now_ms=0, max_skew_s=5, key_for=keys.__getitem__)
