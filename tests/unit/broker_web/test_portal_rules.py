"""broker.portal: what is kept of a card or a bank account, and the profile fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.domain.personal import (
    CardDetails,
    card_brand,
    check_email,
    check_profile_name,
    luhn_ok,
    parse_card,
    parse_iban,
)
from netpay.errors import InvalidArgument

NOW_MS = 1_800_000_000_000  # 2027-01-15


def test_a_card_keeps_brand_last4_expiry_and_holder_only() -> None:
    card = parse_card(" Alice ", "4242-4242 4242 4242", "07", "2031", NOW_MS)
    assert card == CardDetails("Visa", "4242", 7, 2031, "Alice")
    assert "42424242" not in repr(card)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", "Visa"),
        ("5555555555554444", "Mastercard"),
        ("2223003122003222", "Mastercard"),
        ("378282246310005", "American Express"),
        ("6011111111111117", "Discover"),
        ("3530111333300000", "Card"),
    ],
)
def test_brands(number: str, brand: str) -> None:
    assert luhn_ok(number)
    assert card_brand(number) == brand


@pytest.mark.parametrize(
    ("holder", "number", "month", "year", "why"),
    [
        ("A", "4242424242424241", "1", "2030", "check digit"),
        ("A", "42424242", "1", "2030", "12 to 19 digits"),
        ("A", "4242 4242 4242 424\u0662", "1", "2030", "12 to 19 digits"),
        ("A", "4" * 40, "1", "2030", "too long"),
        ("A", "4242424242424242", "0", "2030", "month"),
        ("A", "4242424242424242", "\u00b2", "2030", "month"),
        ("A", "4242424242424242", "12", "2026", "year"),
        ("A", "4242424242424242", "12", "2099", "year"),
        ("", "4242424242424242", "1", "2030", "holder name is required"),
        ("A\x00", "4242424242424242", "1", "2030", "printable"),
        ("A" * 101, "4242424242424242", "1", "2030", "at most 100"),
    ],
)
def test_bad_cards(holder: str, number: str, month: str, year: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        parse_card(holder, number, month, year, NOW_MS)


def test_a_card_expiring_this_month_is_still_good() -> None:
    assert parse_card("A", "4242424242424242", "1", "2027", NOW_MS).exp_year == 2027


def test_an_iban_keeps_country_and_last4() -> None:
    account = parse_iban("Bob", "gb82 west 1234 5698 7654 32")
    assert (account.country, account.last4, account.holder_name) == ("GB", "5432", "Bob")


@pytest.mark.parametrize(
    "iban", ["GB83 WEST 1234 5698 7654 32", "GB82", "1282WEST12345698765432", "X" * 60]
)
def test_bad_ibans(iban: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_iban("Bob", iban)


def test_profile_fields() -> None:
    assert check_profile_name("  ") is None
    assert check_profile_name(" Ann ") == "Ann"
    assert check_email("") is None
    assert check_email("ann@example.org") == "ann@example.org"
    for bad in (
        "ann",
        "ann@",
        "@example.org",
        "ann@example",
        "a b@example.org",
        "a" * 250 + "@x.org",
    ):
        with pytest.raises(InvalidArgument):
            check_email(bad)
    with pytest.raises(InvalidArgument):
        check_profile_name("x" * 101)


@given(st.text(max_size=80))
def test_card_parsing_never_fails_unexpectedly(text: str) -> None:
    try:
        parse_card(text, text, text, text, NOW_MS)
    except InvalidArgument:
        pass
    try:
        parse_iban(text, text)
    except InvalidArgument:
        pass
