"""Money: integer minor units with an ISO-4217 currency. Never floats."""

from __future__ import annotations

from dataclasses import dataclass

from netpay.encoding import check_currency
from netpay.errors import InvalidArgument, WrongAmount, WrongCurrency

__all__ = ["DEFAULT_CURRENCY", "Money", "words_for"]

DEFAULT_CURRENCY = "EUR"
_MAX_MINOR = 10**15


@dataclass(frozen=True, order=True)
class Money:
    """An amount in minor units (cents for EUR) and its currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise InvalidArgument("amount must be an integer number of minor units")
        if abs(self.amount_minor) > _MAX_MINOR:
            raise InvalidArgument("amount out of range")
        check_currency(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise WrongCurrency(f"cannot combine {self.currency} with {other.currency}")

    def __str__(self) -> str:
        sign = "-" if self.amount_minor < 0 else ""
        whole, cents = divmod(abs(self.amount_minor), 100)
        return f"{sign}{whole}.{cents:02d} {self.currency}"


def words_for(price: Money, unit_value_minor: int, coin_currency: str) -> int:
    """How many words of a coin pay ``price``.

    Raises :class:`WrongCurrency` when the currencies differ and
    :class:`WrongAmount` when the unit value does not divide the amount.
    """
    if price.currency != coin_currency:
        raise WrongCurrency(f"price is in {price.currency}, the coin in {coin_currency}")
    if unit_value_minor <= 0 or price.amount_minor <= 0:
        raise WrongAmount("amount and unit value must be positive")
    words, rest = divmod(price.amount_minor, unit_value_minor)
    if rest:
        raise WrongAmount(
            f"unit value {unit_value_minor} does not divide amount {price.amount_minor}"
        )
    return words
