"""Bearer metadata and vendor-to-vendor call signatures (docs/protocol.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from google.protobuf.message import Message

from netpay.encoding import b64url_decode, b64url_encode, check_party_id
from netpay.envelope import SigningKey, verify_raw
from netpay.errors import Malformed, PermissionDenied, Unauthenticated

__all__ = [
    "CALLER_KEY",
    "SIGNATURE_KEY",
    "TIME_KEY",
    "bearer_metadata",
    "bearer_token",
    "call_signing_input",
    "sign_call",
    "verify_call",
]

CALLER_KEY = "netpay-caller"
TIME_KEY = "netpay-time-ms"
SIGNATURE_KEY = "netpay-signature"
_MAX_TOKEN_LEN = 256
Metadata = Sequence[tuple[str, str | bytes]]


def bearer_metadata(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def bearer_token(metadata: Metadata) -> str:
    """The bearer token in ``authorization`` metadata, or Unauthenticated."""
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and 0 < len(token) <= _MAX_TOKEN_LEN:
                return token.strip()
    raise Unauthenticated("missing bearer token")


def call_signing_input(method: str, request: Message, time_ms: int) -> bytes:
    body_hash = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
    return (
        b"NetPay-v1-call\x00"
        + method.encode("ascii")
        + b"\x00"
        + body_hash
        + b"\x00"
        + str(time_ms).encode("ascii")
    )


def sign_call(
    key: SigningKey, caller: str, method: str, request: Message, time_ms: int
) -> list[tuple[str, str]]:
    """Metadata proving that ``caller`` made this call now."""
    sig = key.sign(call_signing_input(method, request, time_ms))
    return [(CALLER_KEY, caller), (TIME_KEY, str(time_ms)), (SIGNATURE_KEY, b64url_encode(sig))]


def verify_call(
    metadata: Metadata,
    method: str,
    request: Message,
    *,
    now_ms: int,
    max_skew_s: int,
    key_for: Callable[[str], bytes],
) -> str:
    """Check a signed vendor call; returns the caller's vendor id."""
    meta = {k: v for k, v in metadata if isinstance(v, str)}
    try:
        caller = check_party_id(meta[CALLER_KEY], "caller")
        time_text = meta[TIME_KEY]
        signature = b64url_decode(meta[SIGNATURE_KEY], max_len=128)
    except KeyError as exc:
        raise Unauthenticated("vendor call is not signed") from exc
    except Malformed as exc:
        raise Unauthenticated(f"bad call signature metadata: {exc.detail}") from exc
    if not time_text.isdigit() or len(time_text) > 15:
        raise Unauthenticated("bad call time")
    time_ms = int(time_text)
    if abs(now_ms - time_ms) > max_skew_s * 1000:
        raise Unauthenticated("call time too far from the callee's clock")
    if not verify_raw(key_for(caller), signature, call_signing_input(method, request, time_ms)):
        raise PermissionDenied("call signature does not verify")
    return caller
