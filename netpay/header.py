"""The `Authorization` / `WWW-Authenticate: NetPay` codec (protocol.md).

Grammar (RFC 9110 auth-params)::

    credentials = "NetPay" 1*SP auth-param *( OWS "," OWS auth-param )
    auth-param  = token BWS "=" BWS ( token / quoted-string )

A parameter given twice is malformed, unknown parameters are ignored, names
are case-insensitive. Every malformed input raises :class:`Malformed`; a
header longer than 4 KiB is refused before parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netpay.chain import MAX_CHAIN_UNITS, WORD_BYTES
from netpay.encoding import (
    b64url_decode,
    b64url_encode,
    check_currency,
    check_ecoin_id,
    check_party_id,
)
from netpay.errors import Malformed
from netpay.limits import DEFAULT_LIMITS
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "SCHEME",
    "Challenge",
    "Credentials",
    "format_authorization",
    "format_challenge",
    "parse_auth_params",
    "parse_authorization",
    "parse_challenge",
]

SCHEME = "NetPay"
MAX_HEADER_BYTES = DEFAULT_LIMITS.max_header_bytes
_MAX_PARAMS = 16
_MAX_AMOUNT_MINOR = DEFAULT_LIMITS.max_click_amount_minor
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e\x80-\xff])*"'
_PARAM_RE = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})")
_SEP_RE = re.compile(r"[ \t]*,[ \t]*")
_UINT_RE = re.compile(r"0|[1-9][0-9]{0,9}")
_SCHEME_RE = re.compile(rf"({_TOKEN}) +")


def parse_auth_params(value: str, *, scheme: str = SCHEME) -> dict[str, str]:
    """Split ``Scheme p1="v1", p2=v2`` into a dict of lower-cased names."""
    if not isinstance(value, str):
        raise Malformed("header must be text")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_HEADER_BYTES:
        raise Malformed(f"header longer than {MAX_HEADER_BYTES} bytes")
    m = _SCHEME_RE.match(value)
    if not m or m.group(1).lower() != scheme.lower():
        raise Malformed(f"expected the {scheme} scheme")
    pos = m.end()
    params: dict[str, str] = {}
    while True:
        pm = _PARAM_RE.match(value, pos)
        if not pm:
            raise Malformed(f"bad auth-param at offset {pos}")
        name = pm.group(1).lower()
        raw = pm.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
        if name in params:
            raise Malformed(f"parameter {name!r} given twice")
        if len(params) >= _MAX_PARAMS:
            raise Malformed("too many parameters")
        params[name] = raw
        pos = pm.end()
        if pos == len(value.rstrip(" \t")):
            return params
        sm = _SEP_RE.match(value, pos)
        if not sm:
            raise Malformed(f"expected ',' at offset {pos}")
        pos = sm.end()


def _uint(params: dict[str, str], name: str, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        raise Malformed(f"missing parameter {name!r}")
    if not _UINT_RE.fullmatch(raw):
        raise Malformed(f"{name} must be a decimal integer without leading zeros")
    value = int(raw)
    if value > maximum:
        raise Malformed(f"{name} above {maximum}")
    return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Credentials:
    """A parsed ``Authorization: NetPay`` header."""

    ecoin_id: str
    prev: int
    index: int
    payword: bytes
    window: int | None = None
    touchstone: pb.Envelope | None = None
    holder: str | None = None

    @property
    def ecoin_bytes(self) -> bytes:
        return bytes.fromhex(self.ecoin_id)


def parse_authorization(value: str) -> Credentials:
    params = parse_auth_params(value)
    for required in ("ecoin", "prev", "index", "payword"):
        if required not in params:
            raise Malformed(f"missing parameter {required!r}")
    ecoin_id = check_ecoin_id(params["ecoin"])
    prev = _uint(params, "prev", MAX_CHAIN_UNITS)
    index = _uint(params, "index", MAX_CHAIN_UNITS)
    payword = b64url_decode(params["payword"], max_len=64)
    if len(payword) != WORD_BYTES:
        raise Malformed("payword must be 32 bytes")
    window = _uint(params, "window", MAX_CHAIN_UNITS) if "window" in params else None
    touchstone = None
    if "touchstone" in params:
        touchstone = pb.Envelope()
        try:
            touchstone.ParseFromString(b64url_decode(params["touchstone"]))
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise Malformed("touchstone is not an Envelope") from exc
    holder = check_party_id(params["holder"], "holder") if "holder" in params else None
    return Credentials(ecoin_id, prev, index, payword, window, touchstone, holder)


def format_authorization(c: Credentials) -> str:
    parts = [
        f'ecoin="{c.ecoin_id}"',
        f'prev="{c.prev}"',
        f'index="{c.index}"',
        f'payword="{b64url_encode(c.payword)}"',
    ]
    if c.window is not None:
        parts.append(f'window="{c.window}"')
    if c.touchstone is not None:
        parts.append(f'touchstone="{b64url_encode(c.touchstone.SerializeToString())}"')
    if c.holder is not None:
        parts.append(f'holder="{c.holder}"')
    return f"{SCHEME} " + ", ".join(parts)


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate: NetPay`` challenge (a price)."""

    realm: str
    amount_minor: int
    currency: str
    broker: str


def parse_challenge(value: str) -> Challenge:
    params = parse_auth_params(value)
    for required in ("realm", "amount", "currency", "broker"):
        if required not in params:
            raise Malformed(f"missing parameter {required!r}")
    amount = _uint(params, "amount", _MAX_AMOUNT_MINOR)
    if amount == 0:
        raise Malformed("amount must be positive")
    return Challenge(
        realm=check_party_id(params["realm"], "realm"),
        amount_minor=amount,
        currency=check_currency(params["currency"]),
        broker=check_party_id(params["broker"], "broker"),
    )


def format_challenge(ch: Challenge) -> str:
    return (
        f'{SCHEME} realm={_quote(ch.realm)}, amount="{ch.amount_minor}", '
        f'currency="{ch.currency}", broker={_quote(ch.broker)}'
    )
