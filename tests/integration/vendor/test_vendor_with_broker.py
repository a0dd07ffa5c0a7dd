"""Vendors against the real broker: HTTP payments, hand-off over gRPC, reclaim,
restart, and the web tier under gunicorn."""

from __future__ import annotations

import grpc
import pytest
import requests

from broker.server import BrokerConfig, start_broker
from netpay.encoding import b64url_decode
from netpay.envelope import load_or_create_key, open_envelope
from netpay.errors import PermissionDenied, Unauthenticated
from netpay.files import read_json
from netpay.header import Credentials, format_authorization, parse_challenge
from netpay.transport.auth import sign_call
from netpay.transport.server import channel_options
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from netpay.v1 import vendor_pb2, vendor_pb2_grpc
from vendor.broker_client import GrpcBrokerClient
from vendor.domain import VendorCoinState
from vendor.peer_client import HANDOFF_METHOD, GrpcPeerClient

JSON = {"Accept": "application/json"}


def _authorization(chain, prev, index):
    return format_authorization(Credentials(chain.ecoin_id.hex(), prev, index, chain.word(index)))


def article_url(handle, amount: int) -> str:
    items = requests.get(f"{handle.web_url}/api/articles", timeout=10).json()
    return next(i["url"] for i in items if i["amount"] == amount)


def pay(handle, chain, prev, index, amount=None):
    url = article_url(handle, amount if amount is not None else index - prev)
    return requests.get(
        url, headers={"Authorization": _authorization(chain, prev, index), **JSON}, timeout=10
    )


def verify_receipt(resp, broker_stub, broker_key: bytes) -> pb.Receipt:
    env = pb.Envelope()
    env.ParseFromString(b64url_decode(resp.headers["NetPay-Receipt"]))
    receipt_vendor = pb.Receipt()
    receipt_vendor.ParseFromString(env.payload)
    cert_env = broker_stub.GetVendorCertificate(
        bpb.GetVendorCertificateRequest(vendor_id=receipt_vendor.vendor_id), timeout=10
    ).certificate
    cert = open_envelope(cert_env, pb.VendorCertificate, broker_key)
    return open_envelope(env, pb.Receipt, bytes(cert.public_key))


def test_pay_over_http(start, broker, broker_stub, reader) -> None:
    v1 = start("daily-hash", display_name="The Daily Hash")
    chain = reader.buy(200)
    url = article_url(v1, 5)
    unpaid = requests.get(url, headers=JSON, timeout=10)
    assert unpaid.status_code == 402
    challenge = parse_challenge(unpaid.headers["WWW-Authenticate"])
    assert (challenge.realm, challenge.amount_minor, challenge.broker) == (
        "daily-hash",
        5,
        broker.broker_id,
    )

    paid = pay(v1, chain, 0, 5)
    assert paid.status_code == 200, paid.text
    assert paid.headers["NetPay-Balance"] == "195"
    receipt = verify_receipt(paid, broker_stub, broker.public_key)
    assert (receipt.vendor_id, receipt.epoch, receipt.from_index, receipt.to_index) == (
        "daily-hash",
        1,
        0,
        5,
    )
    status = reader.coin(chain)
    assert (status.holder, status.epoch, status.state) == ("daily-hash", 1, bpb.COIN_STATE_HELD)

    again = pay(v1, chain, 0, 5)  # a lost response: the same header is served again
    assert again.status_code == 200
    assert again.headers["NetPay-Receipt"] == paid.headers["NetPay-Receipt"]

    spent = pay(v1, chain, 2, 4)
    assert spent.status_code == 409
    assert spent.json()["error"] == "already_spent" and spent.json()["index"] == 5

    assert pay(v1, chain, 5, 30, 25).status_code == 200
    v1.services.checkpoint_all()
    assert reader.coin(chain).latest_index == 30


def test_a_frozen_coin_is_revoked_at_the_next_renewal(start, broker, reader, clock) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(200)
    assert pay(v1, chain, 0, 5).status_code == 200
    broker.services.freeze_coin(chain.ecoin_id.hex())
    clock.advance(v1.services.limits.lease_ttl_s)  # the lease lapses: renew synchronously
    refused = pay(v1, chain, 5, 10)
    assert refused.status_code == 402 and refused.json()["error"] == "revoked"


def test_hand_off_between_vendors_over_grpc(start, broker, broker_stub, reader, clock) -> None:
    v1 = start("daily-hash", display_name="The Daily Hash")
    v2 = start("chain-gazette", display_name="The Chain Gazette")
    chain = reader.buy(200)
    assert pay(v1, chain, 0, 10).status_code == 200

    moved = pay(v2, chain, 10, 15)
    assert moved.status_code == 200, moved.text
    receipt = verify_receipt(moved, broker_stub, broker.public_key)
    assert (receipt.vendor_id, receipt.epoch, receipt.from_index) == ("chain-gazette", 2, 10)
    status = reader.coin(chain)
    assert (status.holder, status.epoch, status.latest_index) == ("chain-gazette", 2, 10)

    held_by_v1 = v1.services.coin(chain.ecoin_id.hex())
    assert held_by_v1.view.state is VendorCoinState.HANDING_OFF

    # The reader returns to V1: V1 learns its epoch is over and takes the coin back.
    back = pay(v1, chain, 15, 20)
    assert back.status_code == 200, back.text
    status = reader.coin(chain)
    assert (status.holder, status.epoch, status.latest_index) == ("daily-hash", 3, 15)
    assert v2.services.coin(chain.ecoin_id.hex()).view.state is VendorCoinState.HANDING_OFF

    # V2's reclaim loses to the completed hand-off: its epoch is closed.
    clock.advance(v2.services.limits.handoff_ttl_s + 1)
    assert v2.services.reclaim_due() == 1
    assert v2.services.coin(chain.ecoin_id.hex()).view.state is VendorCoinState.CLOSED
    assert reader.coin(chain).holder == "daily-hash"


def test_abandoned_hand_off_is_reclaimed(start, broker, reader, clock, tmp_path) -> None:
    v1 = start("daily-hash")
    start("chain-gazette")
    chain = reader.buy(200)
    assert pay(v1, chain, 0, 10).status_code == 200

    # V2 takes the grant and V1's CoinIndex, then vanishes before RecordHandoff.
    v2_state = read_json(tmp_path / "chain-gazette" / "vendor.json")
    v2_broker = GrpcBrokerClient(broker.grpc_address, token=v2_state["vendor_token"])
    v2_peer = GrpcPeerClient(
        "chain-gazette", load_or_create_key(tmp_path / "chain-gazette" / "vendor.key"), clock
    )
    try:
        reply = v2_broker.acquire_coin(chain.ecoin_id.hex(), 15, chain.word(15))
        assert reply.WhichOneof("result") == "handoff"
        ci_env = v2_peer.hand_off(v1.grpc_address, reply.handoff.grant).coin_index
        again = v2_peer.hand_off(v1.grpc_address, reply.handoff.grant).coin_index
    finally:
        v2_broker.close()
        v2_peer.close()
    assert again.SerializeToString() == ci_env.SerializeToString()
    busy = pay(v1, chain, 10, 15)  # the hand-off is under way: V1 accepts nothing
    assert busy.status_code == 409 and busy.json()["error"] == "coin_busy"
    assert int(busy.headers["Retry-After"]) >= 1

    assert v1.services.reclaim_due() == 0
    clock.advance(v1.services.limits.handoff_ttl_s)
    assert v1.services.reclaim_due() == 1
    stored = v1.services.coin(chain.ecoin_id.hex())
    assert (stored.view.state, stored.view.epoch, stored.view.index) == (
        VendorCoinState.HELD,
        2,
        10,
    )
    status = reader.coin(chain)
    assert (status.holder, status.epoch, status.latest_index) == ("daily-hash", 2, 10)
    assert pay(v1, chain, 10, 15).status_code == 200


def test_hand_off_requires_a_signed_caller_named_in_the_grant(start, reader, clock, tmp_path):
    v1 = start("daily-hash")
    start("chain-gazette")
    start("third")
    chain = reader.buy(200)
    assert pay(v1, chain, 0, 10).status_code == 200
    v2_state = read_json(tmp_path / "chain-gazette" / "vendor.json")
    v2_broker = GrpcBrokerClient(v2_state["broker_addr"], token=v2_state["vendor_token"])
    try:
        grant = v2_broker.acquire_coin(chain.ecoin_id.hex(), 15, chain.word(15)).handoff.grant
    finally:
        v2_broker.close()
    channel = grpc.insecure_channel(v1.grpc_address, options=channel_options())
    try:
        stub = vendor_pb2_grpc.VendorStub(channel)
        info = stub.GetInfo(vendor_pb2.VendorGetInfoRequest(), timeout=10)
        assert info.vendor_id == "daily-hash" and info.broker_id == "broker"
        request = vendor_pb2.HandOffRequest(grant=grant)
        with pytest.raises(grpc.RpcError) as unsigned:
            stub.HandOff(request, timeout=10)
        assert unsigned.value.code() == grpc.StatusCode.UNAUTHENTICATED
        third_key = load_or_create_key(tmp_path / "third" / "vendor.key")
        metadata = sign_call(third_key, "third", HANDOFF_METHOD, request, clock.now_ms())
        with pytest.raises(grpc.RpcError) as other:
            stub.HandOff(request, metadata=metadata, timeout=10)
        assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
        forged = sign_call(third_key, "chain-gazette", HANDOFF_METHOD, request, clock.now_ms())
        with pytest.raises(grpc.RpcError) as bad_sig:
            stub.HandOff(request, metadata=forged, timeout=10)
        assert bad_sig.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        channel.close()
    assert v1.services.coin(chain.ecoin_id.hex()).view.state is VendorCoinState.HELD


def test_restart_keeps_identity_and_renews_leases(start, reader, clock, tmp_path) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(200)
    assert pay(v1, chain, 0, 5).status_code == 200
    v1.stop()
    again = start("daily-hash", enroll=False, broker_addr=None)
    assert again.vendor_id == "daily-hash"
    stored = again.services.coin(chain.ecoin_id.hex())
    assert stored.view.lease_deadline_ms > clock.now_ms()  # renewed by the start-up checkpoint
    assert pay(again, chain, 5, 10).status_code == 200
    state = read_json(tmp_path / "daily-hash" / "vendor.json")
    assert set(state) == {
        "vendor_id",
        "vendor_token",
        "broker_addr",
        "broker_id",
        "broker_public_key",
    }
    assert (tmp_path / "daily-hash" / "vendor.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "daily-hash" / "vendor.key").stat().st_mode & 0o777 == 0o600


def test_the_certificate_is_renewed_before_it_expires(start, broker_stub, broker, clock) -> None:
    v1 = start("daily-hash")

    def certificate() -> pb.VendorCertificate:
        env = broker_stub.GetVendorCertificate(
            bpb.GetVendorCertificateRequest(vendor_id="daily-hash"), timeout=10
        ).certificate
        return open_envelope(env, pb.VendorCertificate, broker.public_key)

    first = certificate()
    assert not v1.renew_certificate_if_due()
    clock.advance((first.valid_until_ms - first.issued_at_ms) / 2000 + 1)
    assert v1.renew_certificate_if_due()
    renewed = certificate()
    assert renewed.valid_until_ms > first.valid_until_ms
    assert renewed.grpc_address == v1.grpc_address
    channel = grpc.insecure_channel(v1.grpc_address, options=channel_options())
    try:
        info = vendor_pb2_grpc.VendorStub(channel).GetInfo(
            vendor_pb2.VendorGetInfoRequest(), timeout=10
        )
    finally:
        channel.close()
    served = open_envelope(info.certificate, pb.VendorCertificate, broker.public_key)
    assert served.valid_until_ms == renewed.valid_until_ms


def test_a_different_broker_key_is_refused(start, tmp_path, clock) -> None:
    v1 = start("daily-hash")
    v1.stop()
    impostor = start_broker(BrokerConfig(data_dir=tmp_path / "impostor"), clock=clock)
    try:
        with pytest.raises(PermissionDenied, match="pinned"):
            start("daily-hash", enroll=False, broker_addr=impostor.grpc_address)
    finally:
        impostor.stop()


def test_first_start_needs_an_enrollment_token(start) -> None:
    with pytest.raises(Exception) as err:
        start("daily-hash", enroll=False)
    assert "enroll" in str(err.value)
    with pytest.raises(Unauthenticated):
        start("chain-gazette", enroll=False, enroll_token="not-a-token")


def test_gunicorn_workers_pay_an_article(start, reader) -> None:
    v1 = start("daily-hash", workers=2, display_name="The Chain Gazette")
    assert "The Chain Gazette" in requests.get(v1.web_url, timeout=10).text
    chain = reader.buy(200)
    first = pay(v1, chain, 0, 12)
    assert first.status_code == 200, first.text
    second = pay(v1, chain, 12, 37, 25)
    assert second.status_code == 200, second.text
    assert second.headers["NetPay-Balance"] == "163"
    status = reader.coin(chain)
    assert (status.holder, status.epoch) == ("daily-hash", 1)
    web_url = v1.web_url
    v1.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{web_url}/healthz", timeout=5)


_CLI = (
    "import argparse, sys\n"
    "from vendor import cli\n"
    "parser = argparse.ArgumentParser(prog='netpay')\n"
    "cli.add_commands(parser.add_subparsers(required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.func(args))\n"
)


def test_cli_serve_prints_one_ready_line_and_stops_on_sigterm(broker, broker_dir, tmp_path):
    import json
    import selectors
    import signal
    import subprocess
    import sys

    from broker.server import add_vendor

    token = add_vendor(broker_dir, "daily-hash")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CLI,
            "vendor",
            "serve",
            "--data-dir",
            str(tmp_path / "cli-vendor"),
            "--broker",
            broker.grpc_address,
            "--enroll",
            token,
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=60), "no ready line within 60 s"
        ready = json.loads(proc.stdout.readline())
        assert set(ready) == {"grpc", "web"}
        assert ready["web"].startswith("http://127.0.0.1:")
        assert requests.get(f"{ready['web']}/healthz", timeout=10).json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stdout.read() == b""  # exactly one line on stdout
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{ready['web']}/healthz", timeout=5)  # gunicorn is gone too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
