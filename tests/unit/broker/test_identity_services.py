"""Identity use cases (broker.services.identity) over the in-memory unit of work."""

from __future__ import annotations

import pytest

from broker.domain import AccountRef
from broker.services import MAX_FAILED_LOGINS, READER_TOKEN_TTL_S, BrokerServices, hash_token
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, open_envelope
from netpay.errors import (
    AlreadyExists,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from netpay.v1 import statements_pb2 as pb
from tests.unit.broker.conftest import DEPOSIT_MINOR, PASSWORD, enrolled_vendor
from tests.unit.broker.fakes import FakeUnitOfWork


def test_register_opens_the_reader_and_a_funded_bank_account(
    services: BrokerServices, uow: FakeUnitOfWork
) -> None:
    reader_id = services.register_reader("ann", PASSWORD)
    assert uow.committed
    reader = uow.state.readers[reader_id]
    assert reader.username == "ann"
    assert reader.password_hash != PASSWORD and reader.password_hash.startswith("$argon2id$")
    assert uow.state.balance(AccountRef.reader(reader_id, "EUR")) == DEPOSIT_MINOR
    assert services.account_balances(reader_id) == {"EUR": DEPOSIT_MINOR}


def test_a_taken_username_is_refused_and_nothing_is_written(
    services: BrokerServices, uow: FakeUnitOfWork
) -> None:
    services.register_reader("ann", PASSWORD)
    before = uow.snapshot()
    with pytest.raises(AlreadyExists, match="username ann is taken"):
        services.register_reader("ann", "another password")
    assert not uow.committed
    assert uow.state == before
    assert len(uow.state.readers) == 1


def test_a_bad_username_or_short_password_never_opens_a_unit(
    services: BrokerServices, uow: FakeUnitOfWork
) -> None:
    with pytest.raises(InvalidArgument):
        services.register_reader("A", PASSWORD)
    with pytest.raises(InvalidArgument):
        services.register_reader("bob", "short")
    assert uow.units == 0 and uow.state.readers == {}


def test_login_issues_a_token_that_authenticates_the_reader(
    services: BrokerServices, uow: FakeUnitOfWork, clock: FakeClock
) -> None:
    reader_id = services.register_reader("ann", PASSWORD)
    result = services.login("ann", PASSWORD)
    assert result.reader_id == reader_id
    assert result.expires_at_ms == clock.now_ms() + READER_TOKEN_TTL_S * 1000
    # Only the token's hash is kept.
    assert list(uow.state.reader_tokens) == [hash_token(result.token)]
    assert services.authenticate_reader(result.token) == reader_id
    assert services.authenticate_any(result.token) == (reader_id, None)


def test_a_wrong_password_is_refused_and_counted(
    services: BrokerServices, uow: FakeUnitOfWork
) -> None:
    services.register_reader("ann", PASSWORD)
    with pytest.raises(Unauthenticated, match="wrong username or password"):
        services.login("ann", "not the password")
    with pytest.raises(Unauthenticated, match="wrong username or password"):
        services.login("nobody", PASSWORD)  # unknown names cost and count the same
    assert uow.state.reader_tokens == {}
    assert [name for name, _ in uow.state.login_failures] == ["ann", "nobody"]


def test_failed_logins_are_throttled_then_the_window_passes(
    services: BrokerServices, uow: FakeUnitOfWork, clock: FakeClock
) -> None:
    services.register_reader("ann", PASSWORD)
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(Unauthenticated):
            services.login("ann", "not the password")
        clock.advance(10)
    before = uow.snapshot()
    # Even the right password is refused while the limit holds, and nothing is written.
    with pytest.raises(PermissionDenied, match="too many failed logins") as refused:
        services.login("ann", PASSWORD)
    assert refused.value.retry_after_s == 300 - 5 * 10
    assert uow.state == before
    clock.advance(300)
    assert services.login("ann", PASSWORD).reader_id
    assert uow.state.login_failures == []  # a good login clears the failures


def test_unknown_and_expired_tokens_are_refused(services: BrokerServices, clock: FakeClock) -> None:
    services.register_reader("ann", PASSWORD)
    token = services.login("ann", PASSWORD).token
    with pytest.raises(Unauthenticated):
        services.authenticate_reader("not-a-token")
    with pytest.raises(Unauthenticated, match="unknown or expired token"):
        services.authenticate_any("not-a-token")
    clock.advance(READER_TOKEN_TTL_S)
    with pytest.raises(Unauthenticated, match="unknown or expired reader token"):
        services.authenticate_reader(token)


def test_a_vendor_enrolls_once_and_its_token_authenticates_it(
    services: BrokerServices, uow: FakeUnitOfWork
) -> None:
    vendor = enrolled_vendor(services, "daily")
    assert services.authenticate_vendor(vendor.token) == "daily"
    assert services.authenticate_any(vendor.token) == (None, "daily")
    row = uow.state.vendors["daily"]
    assert row.enrollment_token_sha256 is None and row.public_key == vendor.key.public_key
    cert = open_envelope(
        services.vendor_certificate("daily"), pb.VendorCertificate, services.public_key
    )
    assert (cert.vendor_id, cert.web_origin, cert.display_name) == (
        "daily",
        "http://daily.example:8001",  # the operator's fixed origin wins
        "Daily",
    )
    with pytest.raises(AlreadyExists):
        services.add_vendor("daily")


def test_a_reregistration_with_another_key_is_refused_and_changes_nothing(
    services: BrokerServices, uow: FakeUnitOfWork
) -> None:
    vendor = enrolled_vendor(services, "daily")
    before = uow.snapshot()
    with pytest.raises(PermissionDenied, match="differs from the enrolled key"):
        services.register_vendor(
            enrollment_token="",
            bearer_token=vendor.token,
            public_key=SigningKey.generate().public_key,
            grpc_address="127.0.0.1:9001",
            web_origin="",
            display_name="Other",
        )
    assert not uow.committed
    assert uow.state == before


def test_change_password_checks_the_current_one_and_ends_the_tokens(
    services: BrokerServices, uow: FakeUnitOfWork
) -> None:
    reader_id = services.register_reader("ann", PASSWORD)
    token = services.login("ann", PASSWORD).token
    with pytest.raises(Unauthenticated, match="current password is wrong"):
        services.change_password(reader_id, "not the password", "a new password")
    assert services.authenticate_reader(token) == reader_id
    services.change_password(reader_id, PASSWORD, "a new password")
    with pytest.raises(Unauthenticated):
        services.authenticate_reader(token)
    with pytest.raises(Unauthenticated):
        services.login("ann", PASSWORD)
    assert services.login("ann", "a new password").reader_id == reader_id
