"""Signed envelopes (protocol.md, "Signed statements").

``signature = Ed25519(key, "NetPay-v1" || 0x00 || payload_type || 0x00 || payload)``.
A verifier requires the payload type it expects, checks the signature over the
bytes it received with the key of the signer the payload names, and uses the
parsed payload; it never re-serializes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from google.protobuf.message import DecodeError, Message

from netpay.errors import SignatureInvalid
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SigningKey",
    "key_id",
    "load_or_create_key",
    "open_envelope",
    "seal",
    "signing_input",
    "verify_raw",
]

PUBLIC_KEY_BYTES = 32
_DOMAIN = b"NetPay-v1"
_MAX_PAYLOAD_BYTES = 64 * 1024
M = TypeVar("M", bound=Message)


def key_id(public_key: bytes) -> str:
    """Hex of the first 8 bytes of SHA-256 of the raw public key (a hint only)."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def signing_input(payload_type: str, payload: bytes) -> bytes:
    return _DOMAIN + b"\x00" + payload_type.encode("utf-8") + b"\x00" + payload


class SigningKey:
    """An Ed25519 private key with the helpers every party needs."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_raw(cls, raw: bytes) -> SigningKey:
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def raw_private(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:  # never show key material
        return f"SigningKey(key_id={self.key_id})"


def load_or_create_key(path: Path) -> SigningKey:
    """The Ed25519 key at ``path``, made (mode 0600) if the file does not exist."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} must be mode 0600, is {mode:04o}")
        raw = path.read_bytes()
        if len(raw) != 32:
            raise ValueError(f"{path} is not a raw Ed25519 key")
        return SigningKey.from_raw(raw)
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.raw_private())
        f.flush()
        os.fsync(f.fileno())
    return key


def seal(message: Message, key: SigningKey) -> pb.Envelope:
    """Serialize ``message`` and sign it into an Envelope."""
    payload_type = message.DESCRIPTOR.full_name
    payload = message.SerializeToString(deterministic=True)
    return pb.Envelope(
        payload_type=payload_type,
        payload=payload,
        key_id=key.key_id,
        signature=key.sign(signing_input(payload_type, payload)),
    )


def verify_raw(public_key: bytes, signature: bytes, data: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def open_envelope(
    envelope: pb.Envelope,
    message_cls: type[M],
    signer_key: bytes | Callable[[M], bytes],
) -> M:
    """Verify ``envelope`` and return its parsed payload.

    ``signer_key`` is the signer's raw public key, or a function from the
    parsed payload to the key of the signer it names (a vendor id, say); it
    may raise a NetPayError when the named signer is unknown. Raises
    :class:`SignatureInvalid` for a wrong type, an unparsable payload or a
    bad signature.
    """
    expected_type = message_cls.DESCRIPTOR.full_name
    if envelope.payload_type != expected_type:
        raise SignatureInvalid(f"expected a {expected_type}, got {envelope.payload_type[:80]!r}")
    if len(envelope.payload) > _MAX_PAYLOAD_BYTES:
        raise SignatureInvalid("payload too large")
    message = message_cls()
    try:
        message.ParseFromString(envelope.payload)
    except DecodeError as exc:
        raise SignatureInvalid(f"{expected_type} payload does not parse") from exc
    key = signer_key(message) if callable(signer_key) else signer_key
    if not verify_raw(key, envelope.signature, signing_input(expected_type, envelope.payload)):
        raise SignatureInvalid(f"{expected_type} signature does not verify")
    return message
