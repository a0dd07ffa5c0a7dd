from __future__ import annotations

import pytest

from netpay.errors import InvalidArgument, Malformed, WrongAmount, WrongCurrency
from netpay.money import Money, words_for


def test_words_for() -> None:
    assert words_for(Money(12, "EUR"), 1, "EUR") == 12
    assert words_for(Money(12, "EUR"), 4, "EUR") == 3
    with pytest.raises(WrongAmount):
        words_for(Money(10, "EUR"), 4, "EUR")
    with pytest.raises(WrongCurrency):
        words_for(Money(10, "EUR"), 1, "USD")


def test_money_is_integer_minor_units() -> None:
    assert str(Money(1234, "EUR")) == "12.34 EUR"
    assert str(Money(-5, "USD")) == "-0.05 USD"
    assert Money(5, "EUR") + Money(7, "EUR") == Money(12, "EUR")
    with pytest.raises(WrongCurrency):
        Money(5, "EUR") + Money(7, "USD")
    with pytest.raises(InvalidArgument):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Money(True, "EUR")
    with pytest.raises(Malformed):
        Money(1, "eur")
