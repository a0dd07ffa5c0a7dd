"""Small wire encodings shared by every party: base64url, hex ids, id grammar."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from netpay.errors import Malformed

__all__ = [
    "ECOIN_ID_BYTES",
    "PARTY_ID_RE",
    "b64url_decode",
    "b64url_encode",
    "b64url_exact",
    "check_currency",
    "check_ecoin_id",
    "check_party_id",
    "is_loopback_host",
]

ECOIN_ID_BYTES = 16
PARTY_ID_RE = re.compile(r"[a-z0-9-]{1,32}")
_ECOIN_HEX_RE = re.compile(r"[0-9a-f]{32}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, max_len: int = 8192) -> bytes:
    """Decode base64url without padding; anything else is :class:`Malformed`."""
    if len(text) > max_len:
        raise Malformed("base64url value too long")
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise Malformed("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex guards
        raise Malformed("not base64url") from exc


def b64url_exact(text: object, length: int) -> bytes | None:
    """``text`` decoded when it is base64url of exactly ``length`` bytes, else ``None``
    (an optional field from another party: anything else is as good as absent)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        decoded = b64url_decode(text, max_len=2 * length + 4)
    except Malformed:
        return None
    return decoded if len(decoded) == length else None


def check_ecoin_id(text: str) -> str:
    """An ecoin id in text form: 32 lowercase hex characters."""
    if not isinstance(text, str) or not _ECOIN_HEX_RE.fullmatch(text):
        raise Malformed("ecoin id must be 32 lowercase hex characters")
    return text


def check_party_id(text: str, what: str = "vendor id") -> str:
    """A vendor or broker id: ``[a-z0-9-]{1,32}``."""
    if not isinstance(text, str) or not PARTY_ID_RE.fullmatch(text):
        raise Malformed(f"{what} must match [a-z0-9-]{{1,32}}")
    return text


def check_currency(text: str) -> str:
    """An ISO-4217 alphabetic code (three capital letters)."""
    if not isinstance(text, str) or not _CURRENCY_RE.fullmatch(text):
        raise Malformed("currency must be three capital letters (ISO 4217)")
    return text


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``) and loopback IP addresses.

    Accepts a bare host, ``host:port``, ``[v6]`` or ``[v6]:port``: what a
    listen address, a Host header or a URL's netloc holds.
    """
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
