"""GetInfo, readers, vendors, the data dir, health and reflection over a real channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from sqlalchemy import select

from broker.rpc import SERVICE_NAME
from broker.server import BrokerConfig, add_vendor, start_broker
from broker.storage import ReaderRow, ReaderTokenRow, VendorRow
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, open_envelope
from netpay.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from netpay.transport.auth import bearer_metadata
from netpay.transport.status import from_rpc_error
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb


def test_get_info_reports_id_key_currencies_and_every_limit(h: Any) -> None:
    info = h.stub.GetInfo(bpb.GetInfoRequest())
    assert info.broker_id == "broker"
    assert info.public_key == h.broker.public_key and len(info.public_key) == 32
    assert list(info.currencies) == ["EUR", "USD"]
    lim = h.broker.services.limits
    for field in bpb.Limits.DESCRIPTOR.fields:
        assert getattr(info.limits, field.name) == getattr(lim, field.name), field.name
        assert getattr(info.limits, field.name) != 0, field.name


def test_data_dir_is_made_once_and_its_id_and_key_are_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "b"
    first = start_broker(BrokerConfig(data_dir=data_dir, broker_id="main-broker"))
    first.stop()
    assert (data_dir / "broker.key").stat().st_mode & 0o777 == 0o600
    assert json.loads((data_dir / "broker.json").read_text()) == {"broker_id": "main-broker"}
    assert (data_dir / "broker.sqlite").exists()
    again = start_broker(BrokerConfig(data_dir=data_dir, broker_id="other"))
    try:
        assert again.broker_id == "main-broker"
        assert again.public_key == first.public_key
    finally:
        again.stop()


def test_register_and_login(h: Any) -> None:
    reader = h.reader("alice")
    assert h.balance(reader) == 10_000 and h.balance(reader, "USD") == 10_000
    with h.broker.services.store.begin() as repos:
        row = repos.session.scalars(select(ReaderRow).where(ReaderRow.username == "alice")).one()
        assert row.password_hash.startswith("$argon2id$")
        assert h.password not in row.password_hash
        tokens = repos.session.scalars(select(ReaderTokenRow.token_sha256)).all()
        assert all(len(t) == 32 for t in tokens) and reader.token.encode() not in tokens
    code, err = h.error(
        h.stub.RegisterReader, bpb.RegisterReaderRequest(username="alice", password=h.password)
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and isinstance(err, AlreadyExists)


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("ab", "long enough"),
        ("Alice", "long enough"),
        ("a" * 33, "long enough"),
        ("bob", "short"),
        ("bob", "x" * 257),
    ],
)
def test_register_refuses_bad_input(h: Any, username: str, password: str) -> None:
    code, err = h.error(
        h.stub.RegisterReader, bpb.RegisterReaderRequest(username=username, password=password)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and isinstance(err, InvalidArgument)


def test_wrong_password_and_failed_login_limit(h: Any) -> None:
    h.reader("carol")
    bad = bpb.LoginRequest(username="carol", password="wrong password")
    for _ in range(5):
        code, err = h.error(h.stub.Login, bad)
        assert code == grpc.StatusCode.UNAUTHENTICATED and err.code == "unauthenticated"
    # The sixth attempt is refused even with the right password.
    good = bpb.LoginRequest(username="carol", password=h.password)
    code, err = h.error(h.stub.Login, good)
    assert code == grpc.StatusCode.PERMISSION_DENIED and isinstance(err, PermissionDenied)
    assert err.retry_after_s == 300
    h.clock.advance(301)
    assert h.stub.Login(good).token


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(h: Any) -> None:
    code, err = h.error(h.stub.Login, bpb.LoginRequest(username="nobody", password="whatever1"))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert err.detail == "wrong username or password"


def test_reader_tokens_expire_after_30_days(h: Any) -> None:
    reader = h.reader()
    h.clock.advance(30 * 86_400 - 1)
    assert h.balance(reader) == 10_000
    h.clock.advance(2)
    code, _ = h.error(h.stub.GetAccount, bpb.GetAccountRequest(), metadata=reader.md)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = h.error(h.stub.GetAccount, bpb.GetAccountRequest())
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_vendor_enrollment_issues_a_token_and_a_certificate(h: Any) -> None:
    v1 = h.vendor("daily-planet")
    cert = open_envelope(v1.certificate, pb.VendorCertificate, h.broker.public_key)
    assert cert.vendor_id == "daily-planet" and cert.public_key == v1.key.public_key
    assert cert.grpc_address == "127.0.0.1:9999"
    assert cert.web_origin == "http://127.0.0.1:8001"
    assert cert.display_name == "The daily-planet" and cert.broker_id == "broker"
    now = h.clock.now_ms()
    assert (cert.issued_at_ms, cert.valid_until_ms) == (now, now + 7 * 86_400_000)
    got = h.stub.GetVendorCertificate(bpb.GetVendorCertificateRequest(vendor_id="daily-planet"))
    assert got.certificate == v1.certificate
    with h.broker.services.store.begin() as repos:
        row = repos.session.get(VendorRow, "daily-planet")
        assert row is not None and row.enrollment_token_sha256 is None
        assert row.vendor_token_sha256 is not None and len(row.vendor_token_sha256) == 32


def test_an_enrollment_token_works_once(h: Any) -> None:
    token = add_vendor(h.data_dir, "gazette")
    request = bpb.RegisterVendorRequest(
        enrollment_token=token,
        public_key=SigningKey.generate().public_key,
        grpc_address="127.0.0.1:1",
    )
    first = h.stub.RegisterVendor(request)
    assert first.vendor_id == "gazette" and first.vendor_token
    assert first.broker_id == "broker" and first.broker_public_key == h.broker.public_key
    code, err = h.error(h.stub.RegisterVendor, request)
    assert code == grpc.StatusCode.UNAUTHENTICATED and isinstance(err, Unauthenticated)
    with pytest.raises(AlreadyExists):
        add_vendor(h.data_dir, "gazette")


def test_vendor_reregistration_needs_its_token_and_key(h: Any) -> None:
    v1 = h.vendor("times")
    h.clock.advance(60)
    again = h.stub.RegisterVendor(
        bpb.RegisterVendorRequest(
            public_key=v1.key.public_key,
            grpc_address="127.0.0.1:7777",
            web_origin="http://127.0.0.1:9001",
            display_name="Times",
        ),
        metadata=v1.md,
    )
    assert again.vendor_id == "times" and again.vendor_token == ""
    cert = open_envelope(again.certificate, pb.VendorCertificate, h.broker.public_key)
    assert (cert.grpc_address, cert.web_origin) == ("127.0.0.1:7777", "http://127.0.0.1:9001")
    assert cert.issued_at_ms == h.clock.now_ms()
    newest = h.stub.GetVendorCertificate(bpb.GetVendorCertificateRequest(vendor_id="times"))
    assert newest.certificate == again.certificate
    other_key = bpb.RegisterVendorRequest(
        public_key=SigningKey.generate().public_key, grpc_address="127.0.0.1:7777"
    )
    code, _ = h.error(h.stub.RegisterVendor, other_key, metadata=v1.md)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = h.error(h.stub.RegisterVendor, other_key, metadata=bearer_metadata("nope"))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = h.error(h.stub.RegisterVendor, other_key)
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_the_operators_origin_wins(h: Any) -> None:
    v = h.vendor("herald", origin="https://herald.example")
    cert = open_envelope(v.certificate, pb.VendorCertificate, h.broker.public_key)
    assert cert.web_origin == "https://herald.example"


@pytest.mark.parametrize(
    "request_fields",
    [
        {"public_key": b"short", "grpc_address": "127.0.0.1:1"},
        {"grpc_address": "no-port"},
        {"grpc_address": "127.0.0.1:1", "web_origin": "ftp://x"},
        {"grpc_address": "127.0.0.1:1", "display_name": "x" * 101},
    ],
)
def test_register_vendor_validates_its_input(h: Any, request_fields: dict[str, Any]) -> None:
    token = add_vendor(h.data_dir, "checked")
    fields = {"public_key": SigningKey.generate().public_key, **request_fields}
    code, _ = h.error(
        h.stub.RegisterVendor, bpb.RegisterVendorRequest(enrollment_token=token, **fields)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_add_vendor_checks_its_input(h: Any) -> None:
    with pytest.raises(InvalidArgument):
        add_vendor(h.data_dir, "Bad_Id")
    with pytest.raises(InvalidArgument):
        add_vendor(h.data_dir, "ok", origin="http://x/path")


def test_unknown_vendor_certificate_is_not_found(h: Any) -> None:
    code, err = h.error(
        h.stub.GetVendorCertificate, bpb.GetVendorCertificateRequest(vendor_id="ghost")
    )
    assert code == grpc.StatusCode.NOT_FOUND and isinstance(err, NotFound)
    add_vendor(h.data_dir, "not-yet")  # admitted but never registered: no certificate
    code, _ = h.error(
        h.stub.GetVendorCertificate, bpb.GetVendorCertificateRequest(vendor_id="not-yet")
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_errors_carry_an_error_info_reason(h: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        h.stub.GetVendorCertificate(bpb.GetVendorCertificateRequest(vendor_id="ghost"))
    status = rpc_status.from_call(info.value)
    assert status is not None
    details = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(details) == 1
    error_info = error_details_pb2.ErrorInfo()
    details[0].Unpack(error_info)
    assert (error_info.domain, error_info.reason) == ("netpay.v1", "not_found")
    assert type(from_rpc_error(info.value)) is NotFound


def test_health_and_reflection_answer(h: Any) -> None:
    with grpc.insecure_channel(h.broker.grpc_address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", SERVICE_NAME):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = list(
            reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"netpay.v1.Broker", "grpc.health.v1.Health"} <= names


def test_plaintext_listener_on_a_public_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        start_broker(
            BrokerConfig(data_dir=tmp_path / "b", grpc_addr="0.0.0.0:0"), clock=FakeClock()
        )
