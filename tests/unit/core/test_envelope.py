"""Signed envelopes: tampering, wrong signer, wrong type."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from netpay.envelope import SigningKey, key_id, load_or_create_key, open_envelope, seal
from netpay.errors import SignatureInvalid
from netpay.v1 import statements_pb2 as pb


def _touchstone() -> pb.Touchstone:
    return pb.Touchstone(
        ecoin_id="00" * 16,
        root=b"\x01" * 32,
        n=100,
        unit_value_minor=1,
        currency="EUR",
        wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
        owner="r-1",
        issued_at_ms=1,
        expires_at_ms=2,
        broker_id="broker",
    )


def test_round_trip() -> None:
    key = SigningKey.generate()
    env = seal(_touchstone(), key)
    assert env.payload_type == "netpay.v1.Touchstone"
    assert env.key_id == key_id(key.public_key) == key.key_id
    assert open_envelope(env, pb.Touchstone, key.public_key) == _touchstone()


def test_every_flipped_payload_byte_is_refused() -> None:
    key = SigningKey.generate()
    env = seal(_touchstone(), key)
    for i in range(len(env.payload)):
        bad = pb.Envelope()
        bad.CopyFrom(env)
        payload = bytearray(env.payload)
        payload[i] ^= 0x01
        bad.payload = bytes(payload)
        with pytest.raises(SignatureInvalid):
            open_envelope(bad, pb.Touchstone, key.public_key)


def test_tampered_signature_refused() -> None:
    key = SigningKey.generate()
    env = seal(_touchstone(), key)
    env.signature = bytes([env.signature[0] ^ 1]) + env.signature[1:]
    with pytest.raises(SignatureInvalid, match="does not verify"):
        open_envelope(env, pb.Touchstone, key.public_key)


def test_wrong_signer_refused() -> None:
    env = seal(_touchstone(), SigningKey.generate())
    with pytest.raises(SignatureInvalid):
        open_envelope(env, pb.Touchstone, SigningKey.generate().public_key)


def test_wrong_payload_type_refused_even_with_valid_signature() -> None:
    key = SigningKey.generate()
    ci = pb.CoinIndex(ecoin_id="00" * 16, epoch=1, index=3, payword=b"\x00" * 32, vendor_id="v")
    env = seal(ci, key)
    with pytest.raises(SignatureInvalid, match=r"expected a netpay\.v1\.Receipt"):
        open_envelope(env, pb.Receipt, key.public_key)
    # Relabelling the type breaks the signature: the type is signed.
    env.payload_type = "netpay.v1.Receipt"
    with pytest.raises(SignatureInvalid):
        open_envelope(env, pb.Receipt, key.public_key)


def test_signer_named_by_payload() -> None:
    keys = {"v-a": SigningKey.generate(), "v-b": SigningKey.generate()}
    ci = pb.CoinIndex(ecoin_id="00" * 16, epoch=1, index=3, payword=b"\x00" * 32, vendor_id="v-a")
    env = seal(ci, keys["v-b"])  # signed by b, claims to be a
    with pytest.raises(SignatureInvalid):
        open_envelope(env, pb.CoinIndex, lambda m: keys[m.vendor_id].public_key)
    good = seal(ci, keys["v-a"])
    assert open_envelope(good, pb.CoinIndex, lambda m: keys[m.vendor_id].public_key).index == 3


def test_unparsable_payload_refused() -> None:
    key = SigningKey.generate()
    env = seal(_touchstone(), key)
    env.payload = b"\xff\xff\xff"
    with pytest.raises(SignatureInvalid, match="does not parse"):
        open_envelope(env, pb.Touchstone, key.public_key)


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "k" / "vendor.key"
    first = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path).public_key == first.public_key
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        load_or_create_key(path)
    assert "key_id" in repr(first) and first.raw_private().hex() not in repr(first)
