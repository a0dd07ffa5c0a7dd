"""The Authorization / WWW-Authenticate codec, property-tested with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netpay.encoding import b64url_encode
from netpay.errors import Malformed
from netpay.header import (
    Challenge,
    Credentials,
    format_authorization,
    format_challenge,
    parse_authorization,
    parse_challenge,
)
from netpay.v1 import statements_pb2 as pb

ECOIN = "0f" * 16
WORD = bytes(range(32))
party_ids = st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True)
indexes = st.integers(min_value=0, max_value=2**20)

credentials = st.builds(
    Credentials,
    ecoin_id=st.binary(min_size=16, max_size=16).map(bytes.hex),
    prev=indexes,
    index=indexes,
    payword=st.binary(min_size=32, max_size=32),
    window=st.none() | indexes,
    touchstone=st.none()
    | st.builds(
        pb.Envelope, payload_type=st.just("netpay.v1.Touchstone"), payload=st.binary(max_size=200)
    ),
    holder=st.none() | party_ids,
)


@given(credentials)
def test_authorization_round_trip(c: Credentials) -> None:
    assert parse_authorization(format_authorization(c)) == c


@given(
    realm=party_ids,
    amount=st.integers(min_value=1, max_value=10_000),
    currency=st.from_regex(r"[A-Z]{3}", fullmatch=True),
    broker=party_ids,
)
def test_challenge_round_trip(realm: str, amount: int, currency: str, broker: str) -> None:
    ch = Challenge(realm, amount, currency, broker)
    assert parse_challenge(format_challenge(ch)) == ch


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_any_text_is_parsed_or_malformed(text: str) -> None:
    for parse in (parse_authorization, parse_challenge):
        try:
            parse(text)
        except Malformed:
            pass


@settings(max_examples=300)
@given(credentials, st.data())
def test_mutated_headers_are_parsed_or_malformed(c: Credentials, data: st.DataObject) -> None:
    text = format_authorization(c)
    pos = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    repl = data.draw(st.text(min_size=0, max_size=3))
    mutated = text[:pos] + repl + text[pos + 1 :]
    try:
        parsed = parse_authorization(mutated)
    except Malformed:
        return
    assert len(parsed.payword) == 32 and len(parsed.ecoin_id) == 32


def _header(**params: str) -> str:
    return "NetPay " + ", ".join(f'{k}="{v}"' for k, v in params.items())


BASE = {"ecoin": ECOIN, "prev": "0", "index": "5", "payword": b64url_encode(WORD)}


def test_parameter_given_twice_is_malformed() -> None:
    text = _header(**BASE) + ', index="6"'
    with pytest.raises(Malformed, match="twice"):
        parse_authorization(text)
    with pytest.raises(Malformed, match="twice"):
        parse_authorization(_header(**BASE) + ', INDEX="6"')


def test_unknown_parameters_are_ignored_and_names_case_insensitive() -> None:
    text = 'netpay ECOIN="%s", Prev=0, index="5", payword="%s", flavour="x"' % (
        ECOIN,
        b64url_encode(WORD),
    )
    c = parse_authorization(text)
    assert (c.ecoin_id, c.prev, c.index, c.payword) == (ECOIN, 0, 5, WORD)


def test_quoted_string_escapes() -> None:
    text = _header(**BASE) + ', note="a \\"quoted\\" value"'
    assert parse_authorization(text).index == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ecoin": "0F" * 16}, "32 lowercase hex"),
        ({"ecoin": "0f" * 15}, "32 lowercase hex"),
        ({"prev": "01"}, "leading zeros"),
        ({"prev": "-1"}, "decimal"),
        ({"index": "1048577"}, "above"),
        ({"payword": b64url_encode(WORD) + "="}, "base64url"),
        ({"payword": b64url_encode(WORD[:31])}, "32 bytes"),
        ({"holder": "Bad_Vendor"}, "holder"),
        ({"touchstone": "!!"}, "touchstone"),
    ],
)
def test_bad_values(change: dict[str, str], message: str) -> None:
    with pytest.raises(Malformed, match=message):
        parse_authorization(_header(**{**BASE, **change}))


@pytest.mark.parametrize("missing", ["ecoin", "prev", "index", "payword"])
def test_missing_parameter(missing: str) -> None:
    params = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(Malformed, match="missing"):
        parse_authorization(_header(**params))


def test_size_limit_before_parsing() -> None:
    with pytest.raises(Malformed, match="longer than 4096"):
        parse_authorization(_header(**BASE) + ", pad=" + "x" * 4096)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "NetPay",
        "NetPay ",
        "Basic abc",
        'NetPay ecoin="x",',
        'NetPay ecoin="x" prev="1"',
        'NetPay ecoin="unterminated',
    ],
)
def test_structural_errors(text: str) -> None:
    with pytest.raises(Malformed):
        parse_authorization(text)


def test_challenge_refuses_zero_and_bad_currency() -> None:
    with pytest.raises(Malformed):
        parse_challenge('NetPay realm="v", amount="0", currency="EUR", broker="b"')
    with pytest.raises(Malformed):
        parse_challenge('NetPay realm="v", amount="5", currency="eur", broker="b"')
    with pytest.raises(Malformed, match="above"):
        parse_challenge('NetPay realm="v", amount="10001", currency="EUR", broker="b"')
