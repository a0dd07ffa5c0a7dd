"""Rules of the web portal's personal data and demo payment instruments. No I/O.

The demo bank keeps, per instrument, only what a real card processor or
bank lets a merchant keep: for a card the brand, the last four digits, the
expiry and the holder's name (the full number is checked here and dropped);
for a bank account the IBAN's country, its last four characters and the
holder's name. Every input is length-limited and validated; a refusal is an
:class:`netpay.errors.InvalidArgument` whose detail is safe to show.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from netpay.errors import InvalidArgument

__all__ = [
    "MAX_EMAIL_CHARS",
    "MAX_HOLDER_CHARS",
    "MAX_INSTRUMENTS",
    "MAX_PROFILE_NAME_CHARS",
    "BankAccountDetails",
    "CardDetails",
    "InstrumentKind",
    "card_brand",
    "check_email",
    "check_holder_name",
    "check_profile_name",
    "luhn_ok",
    "parse_card",
    "parse_iban",
]

MAX_PROFILE_NAME_CHARS = 100
MAX_EMAIL_CHARS = 254
MAX_HOLDER_CHARS = 100
MAX_INSTRUMENTS = 10
MAX_CARD_INPUT_CHARS = 32
MAX_IBAN_INPUT_CHARS = 48
MAX_EXPIRY_YEARS = 20

_EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


class InstrumentKind(enum.StrEnum):
    CARD = "card"
    BANK_ACCOUNT = "bank_account"


@dataclass(frozen=True)
class CardDetails:
    """What is kept of a card."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    holder_name: str


@dataclass(frozen=True)
class BankAccountDetails:
    """What is kept of a bank account."""

    country: str
    last4: str
    holder_name: str


def _printable_line(text: str, what: str, max_chars: int) -> str:
    text = text.strip()
    if len(text) > max_chars:
        raise InvalidArgument(f"{what}: at most {max_chars} characters")
    if not text.isprintable():
        raise InvalidArgument(f"{what}: printable characters only")
    return text


def check_profile_name(text: str) -> str | None:
    """A display name, or None when left empty."""
    return _printable_line(text, "display name", MAX_PROFILE_NAME_CHARS) or None


def check_email(text: str) -> str | None:
    """An e-mail address (shape only; nothing is sent to it), or None when left empty."""
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_EMAIL_CHARS or not _EMAIL_RE.fullmatch(text):
        raise InvalidArgument("e-mail: expected an address like name@example.org")
    return text


def check_holder_name(text: str) -> str:
    name = _printable_line(text, "holder name", MAX_HOLDER_CHARS)
    if not name:
        raise InvalidArgument("holder name is required")
    return name


def luhn_ok(digits: str) -> bool:
    """The Luhn check digit of a card number (digits only)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str:
    """The brand named by a card number's first digits (IIN ranges)."""
    if digits.startswith("4"):
        return "Visa"
    two, four = int(digits[:2]), int(digits[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "Mastercard"
    if two in (34, 37):
        return "American Express"
    if digits.startswith("6011") or digits.startswith("65"):
        return "Discover"
    return "Card"


def _number(text: str, what: str, low: int, high: int) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        raise InvalidArgument(f"{what} must be a number")
    value = int(text)
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be {low}..{high}")
    return value


def parse_card(
    holder_name: str, number: str, exp_month: str, exp_year: str, now_ms: int
) -> CardDetails:
    """Check a card and keep brand, last 4, expiry and holder; the number is dropped."""
    holder = check_holder_name(holder_name)
    if len(number) > MAX_CARD_INPUT_CHARS:
        raise InvalidArgument("card number: too long")
    digits = number.replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit()) or not 12 <= len(digits) <= 19:
        raise InvalidArgument("card number: 12 to 19 digits")
    if not luhn_ok(digits):
        raise InvalidArgument("card number: the check digit is wrong (a typo?)")
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    month = _number(exp_month, "expiry month", 1, 12)
    year = _number(exp_year, "expiry year", now.year, now.year + MAX_EXPIRY_YEARS)
    if (year, month) < (now.year, now.month):
        raise InvalidArgument("the card has expired")
    return CardDetails(card_brand(digits), digits[-4:], month, year, holder)


def _iban_checksum_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def parse_iban(holder_name: str, iban: str) -> BankAccountDetails:
    """Check an IBAN (shape and mod-97) and keep its country, last 4 and the holder."""
    holder = check_holder_name(holder_name)
    if len(iban) > MAX_IBAN_INPUT_CHARS:
        raise InvalidArgument("IBAN: too long")
    compact = iban.replace(" ", "").upper()
    if not compact.isascii() or not _IBAN_RE.fullmatch(compact):
        raise InvalidArgument("IBAN: two letters, two digits, then 11 to 30 letters or digits")
    if not _iban_checksum_ok(compact):
        raise InvalidArgument("IBAN: the check digits are wrong (a typo?)")
    return BankAccountDetails(compact[:2], compact[-4:], holder)
