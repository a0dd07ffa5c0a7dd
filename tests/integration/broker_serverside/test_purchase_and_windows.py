"""Server-side coins over the Broker's gRPC: purchase, wallet codes, grants, windows."""

from __future__ import annotations

import stat
from typing import Any

import grpc
import pytest

from broker.seedvault import SEED_KEY_FILE, SeedVault
from broker.server import DB_FILE
from netpay.chain import verify_word
from netpay.envelope import open_envelope, seal
from netpay.errors import (
    AlreadyExists,
    CoinBusy,
    Insufficient,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

from .conftest import LIMITS, WALLET_PASSWORD, Harness, ServerCoin, Vendor, rpc_error


def _sealed_chain(h: Harness, ecoin_id: str) -> bytes:
    with h.broker.services.store.begin() as repos:
        row = repos.wallets.get(ecoin_id)
        assert row is not None
        return bytes(row.sealed_chain)


def _db_bytes(h: Harness) -> bytes:
    data = b""
    for path in h.data_dir.iterdir():
        if path.name.startswith(DB_FILE):  # the database, its WAL and shared memory
            data += path.read_bytes()
    return data


# -- purchase ---------------------------------------------------------------------------


def test_server_side_purchase_debits_and_signs_a_server_side_touchstone(h: Harness) -> None:
    reader = h.reader()
    coin = h.buy(reader, n=300)
    assert coin.amount_minor == 300
    assert h.balance(reader) == 10_000 - 300
    assert coin.body.ecoin_id == coin.ecoin_id and len(coin.ecoin_id) == 32
    assert coin.body.wallet_kind == pb.WALLET_KIND_SERVER_SIDE
    assert coin.body.owner == reader.reader_id and coin.body.n == 300
    status = h.coin_status(reader, coin)
    assert status.state == bpb.COIN_STATE_FREE and status.latest_index == 0
    assert status.latest_word == coin.body.root


def test_replay_with_the_same_request_id_and_password_returns_the_first_coin(h: Harness) -> None:
    reader = h.reader()
    request = h.buy_request(40, request_id="same-id")
    first = h.stub.BuyCoin(request, metadata=reader.md)
    again = h.stub.BuyCoin(request, metadata=reader.md)
    assert again.ecoin_id == first.ecoin_id
    assert again.touchstone.SerializeToString() == first.touchstone.SerializeToString()
    assert h.balance(reader) == 10_000 - 40
    # Same id, another password or other terms: a different request.
    other = h.buy_request(40, request_id="same-id", wallet_password="another password")
    code, err = rpc_error(h.stub.BuyCoin, other, metadata=reader.md)
    assert code == grpc.StatusCode.ALREADY_EXISTS and isinstance(err, AlreadyExists)
    code, _ = rpc_error(h.stub.BuyCoin, h.buy_request(41, request_id="same-id"), metadata=reader.md)
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert h.balance(reader) == 10_000 - 40


@pytest.mark.parametrize(
    "changes",
    [
        {"wallet_password": ""},
        {"wallet_password": "short"},
        {"wallet_password": "x" * 257},
        {"ecoin_id": "00" * 16},
        {"root": b"\x01" * 32},
        {"unit_value_minor": 10**9},
    ],
)
def test_bad_server_side_purchases_change_nothing(h: Harness, changes: dict[str, Any]) -> None:
    reader = h.reader()
    code, err = rpc_error(h.stub.BuyCoin, h.buy_request(10, **changes), metadata=reader.md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and isinstance(err, InvalidArgument)
    assert h.balance(reader) == 10_000


def test_a_client_side_purchase_refuses_a_wallet_password(h: Harness) -> None:
    reader = h.reader()
    request = bpb.BuyCoinRequest(
        request_id="c1",
        ecoin_id="ab" * 16,
        root=b"\x02" * 32,
        n=5,
        wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
        wallet_password=WALLET_PASSWORD,
    )
    code, _ = rpc_error(h.stub.BuyCoin, request, metadata=reader.md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_seed_and_password_are_not_stored_in_clear(h: Harness) -> None:
    reader = h.reader()
    coin = h.buy(reader, n=2100)
    key_path = h.data_dir / SEED_KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    chain = SeedVault.open_dir(h.data_dir).open(
        coin.ecoin_id, 2100, _sealed_chain(h, coin.ecoin_id)
    )
    assert chain.root == coin.body.root  # the sealed chain is this coin's
    secrets_in_clear = [chain.seed, chain.word(1024), chain.word(2048)]
    db = _db_bytes(h)
    assert db and all(secret not in db for secret in secrets_in_clear)
    assert WALLET_PASSWORD.encode() not in db
    # Bound to its coin: the sealed chain does not open as another coin's.
    other = h.buy(reader, n=2100)
    with pytest.raises(ValueError):
        SeedVault.open_dir(h.data_dir).open(other.ecoin_id, 2100, _sealed_chain(h, coin.ecoin_id))


# -- wallet codes and grants ----------------------------------------------------------------


def test_a_code_gives_the_vendor_a_grant_once(h: Harness) -> None:
    reader = h.reader()
    coin = h.buy(reader, n=80)
    v1 = h.vendor("v1")
    code = h.code(coin, v1)
    reply = h.stub.ExchangeWalletCode(bpb.ExchangeWalletCodeRequest(code=code), metadata=v1.md)
    grant = open_envelope(reply.grant, pb.WalletGrant, h.broker.public_key)
    assert (grant.ecoin_id, grant.vendor_id, grant.max_units) == (coin.ecoin_id, "v1", 80)
    assert grant.expires_at_ms == coin.body.expires_at_ms
    assert grant.broker_id == h.broker.broker_id and len(grant.grant_id) == 32
    assert reply.touchstone.SerializeToString() == coin.touchstone.SerializeToString()
    code_, err = rpc_error(
        h.stub.ExchangeWalletCode, bpb.ExchangeWalletCodeRequest(code=code), metadata=v1.md
    )
    assert code_ == grpc.StatusCode.NOT_FOUND and isinstance(err, NotFound)


def test_a_code_is_bound_to_its_vendor(h: Harness) -> None:
    coin = h.buy(h.reader())
    v1, v2 = h.vendor("v1"), h.vendor("v2")
    code = h.code(coin, v1)
    request = bpb.ExchangeWalletCodeRequest(code=code)
    status, _ = rpc_error(h.stub.ExchangeWalletCode, request, metadata=v2.md)
    assert status == grpc.StatusCode.NOT_FOUND
    # The other vendor's attempt did not use it up.
    assert h.stub.ExchangeWalletCode(request, metadata=v1.md).grant.payload
    status, _ = rpc_error(h.stub.ExchangeWalletCode, request, metadata=[])
    assert status == grpc.StatusCode.UNAUTHENTICATED


def test_a_code_expires_after_60_seconds(h: Harness) -> None:
    coin = h.buy(h.reader())
    v1 = h.vendor("v1")
    code = h.code(coin, v1)
    h.clock.advance(61)
    status, _ = rpc_error(
        h.stub.ExchangeWalletCode, bpb.ExchangeWalletCodeRequest(code=code), metadata=v1.md
    )
    assert status == grpc.StatusCode.NOT_FOUND


def test_acquisition_with_a_grant(h: Harness) -> None:
    reader = h.reader()
    coin = h.buy(reader)
    v1, v2 = h.vendor("v1"), h.vendor("v2")
    g1 = h.grant(coin, v1).grant
    custody = h.acquire(v1, coin, g1).custody
    assert (custody.epoch, custody.holder, custody.base_index) == (1, "v1", 0)
    assert custody.base_word == coin.body.root
    # v1's grant does not authorise v2; v2's own grant gets a HandOffGrant.
    status, err = rpc_error(h.acquire, v2, coin, g1)
    assert status == grpc.StatusCode.PERMISSION_DENIED and isinstance(err, PermissionDenied)
    g2 = h.grant(coin, v2).grant
    handoff = h.acquire(v2, coin, g2).handoff
    hog = open_envelope(handoff.grant, pb.HandOffGrant, h.broker.public_key)
    assert (hog.from_vendor, hog.to_vendor, hog.epoch) == ("v1", "v2", 1)
    # A grant for another coin, or one this broker did not issue, proves nothing.
    other = h.buy(reader)
    status, _ = rpc_error(h.acquire, v2, other, g2)
    assert status == grpc.StatusCode.PERMISSION_DENIED
    forged = seal(open_envelope(g2, pb.WalletGrant, h.broker.public_key), v2.key)
    status, _ = rpc_error(h.acquire, v2, coin, forged)
    assert status == grpc.StatusCode.INVALID_ARGUMENT


# -- windows ----------------------------------------------------------------------------------


def _held(h: Harness, n: int = 100) -> tuple[Any, ServerCoin, Vendor, pb.Envelope]:
    reader = h.reader()
    coin = h.buy(reader, n=n)
    v1 = h.vendor("v1")
    grant = h.grant(coin, v1).grant
    assert h.acquire(v1, coin, grant).custody.epoch == 1
    return reader, coin, v1, grant


def test_windows_release_words_that_hash_down_to_the_root(h: Harness) -> None:
    reader, coin, v1, grant = _held(h)
    root = coin.body.root
    ecoin = bytes.fromhex(coin.ecoin_id)
    first = h.draw(v1, grant, 1, 30)
    assert (first.ecoin_id, first.epoch, first.from_index, first.to_index) == (
        coin.ecoin_id,
        1,
        0,
        30,
    )
    assert verify_word(ecoin, 0, root, 30, first.payword, 100)
    assert first.grant_units_left == 70
    status = h.coin_status(reader, coin)
    assert (status.latest_index, status.latest_word) == (30, first.payword)
    second = h.draw(v1, grant, 1, 25)
    assert (second.from_index, second.to_index) == (30, 55)
    assert verify_word(ecoin, 30, first.payword, 55, second.payword, 25)
    assert verify_word(ecoin, 0, root, 55, second.payword, 100)
    assert h.coin_status(reader, coin).latest_index == 55
    # The holder's checkpoint at the window top is accepted with zero steps.
    index = seal(
        pb.CoinIndex(
            ecoin_id=coin.ecoin_id, epoch=1, index=55, payword=second.payword, vendor_id="v1"
        ),
        v1.key,
    )
    result = h.stub.Checkpoint(bpb.CheckpointRequest(indexes=[index]), metadata=v1.md).results[0]
    assert result.status == bpb.CHECKPOINT_STATUS_LEASED and result.acknowledged_index == 55


def test_window_sizes_are_checked(h: Harness) -> None:
    reader, coin, v1, grant = _held(h, n=60)
    for units, expected in ((0, InvalidArgument), (LIMITS.max_window_units + 1, LimitExceeded)):
        _, err = rpc_error(h.draw, v1, grant, 1, units)
        assert type(err) is expected
    h.draw(v1, grant, 1, 50)
    status, err = rpc_error(h.draw, v1, grant, 1, 11)
    assert status == grpc.StatusCode.FAILED_PRECONDITION and isinstance(err, Insufficient)
    assert h.draw(v1, grant, 1, 10).to_index == 60
    assert h.coin_status(reader, coin).latest_index == 60


def test_windows_are_refused_to_a_non_holder_and_a_wrong_epoch(h: Harness) -> None:
    reader, coin, _v1, _grant = _held(h)
    v2 = h.vendor("v2")
    g2 = h.grant(coin, v2).grant
    status, err = rpc_error(h.draw, v2, g2, 1, 5)
    assert status == grpc.StatusCode.FAILED_PRECONDITION and type(err) is PreconditionFailed
    status, _ = rpc_error(h.draw, _v1, _grant, 2, 5)
    assert status == grpc.StatusCode.FAILED_PRECONDITION
    status, _ = rpc_error(h.draw, v2, _grant, 1, 5)  # v1's grant in v2's hands
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert h.coin_status(reader, coin).latest_index == 0


def test_windows_are_refused_after_the_lease_lapses(h: Harness) -> None:
    reader, coin, v1, grant = _held(h)
    h.draw(v1, grant, 1, 5)
    h.clock.advance(LIMITS.lease_ttl_s)
    status, err = rpc_error(h.draw, v1, grant, 1, 5)
    assert status == grpc.StatusCode.FAILED_PRECONDITION and "lease" in err.detail
    assert h.coin_status(reader, coin).latest_index == 5
    # Renewing the lease (Checkpoint) lets the holder draw again.
    status_now = h.coin_status(reader, coin)
    index = seal(
        pb.CoinIndex(
            ecoin_id=coin.ecoin_id,
            epoch=1,
            index=5,
            payword=status_now.latest_word,
            vendor_id="v1",
        ),
        v1.key,
    )
    h.stub.Checkpoint(bpb.CheckpointRequest(indexes=[index]), metadata=v1.md)
    assert h.draw(v1, grant, 1, 5).to_index == 10


def test_windows_stop_once_a_handoff_grant_is_issued_and_resume_at_the_next_holder(
    h: Harness,
) -> None:
    reader, coin, v1, g1 = _held(h)
    top = h.draw(v1, g1, 1, 20)
    v2 = h.vendor("v2")
    g2 = h.grant(coin, v2).grant
    assert h.acquire(v2, coin, g2).handoff.grant.payload
    status, err = rpc_error(h.draw, v1, g1, 1, 5)
    assert status == grpc.StatusCode.FAILED_PRECONDITION and isinstance(err, CoinBusy)
    assert err.retry_after_s is not None
    assert h.coin_status(reader, coin).latest_index == 20
    # v1 hands off at its window top; v2 records it and draws from there.
    index = seal(
        pb.CoinIndex(
            ecoin_id=coin.ecoin_id,
            epoch=1,
            index=20,
            payword=top.payword,
            vendor_id="v1",
            to_vendor="v2",
        ),
        v1.key,
    )
    custody = h.stub.RecordHandoff(bpb.RecordHandoffRequest(coin_index=index), metadata=v2.md)
    assert (custody.epoch, custody.base_index) == (2, 20)
    drawn = h.draw(v2, g2, 2, 10)
    assert (drawn.from_index, drawn.to_index) == (20, 30)
    assert verify_word(bytes.fromhex(coin.ecoin_id), 0, coin.body.root, 30, drawn.payword, 100)


def test_a_grant_states_the_words_left_when_issued(h: Harness) -> None:
    reader = h.reader()
    coin = h.buy(reader, n=100)
    v1 = h.vendor("v1")
    # Issued when 90 words were left at the broker: it allows 90 units in all.
    g_first = h.grant(coin, v1).grant
    h.acquire(v1, coin, g_first)
    h.draw(v1, g_first, 1, 10)
    g_late = h.grant(coin, v1).grant
    # Issued when 90 words were left at the broker: it allows 90 units in all.
    assert open_envelope(g_late, pb.WalletGrant, h.broker.public_key).max_units == 90
    assert h.draw(v1, g_late, 1, 50).grant_units_left == 40
    assert h.draw(v1, g_first, 1, 40).grant_units_left == 50
    _, err = rpc_error(h.draw, v1, g_late, 1, 1)
    assert isinstance(err, Insufficient)
