"""Tokens the broker hands out are pasted onto command lines as they are."""

from __future__ import annotations

import argparse

from broker.services.common import new_token


def test_no_token_starts_like_an_option() -> None:
    # One base64url token in 64 starts with "-": 2,000 draws would meet one
    # with near certainty (1 - (63/64) ** 2000 > 0.999_999_999_99).
    tokens = [new_token() for _ in range(2_000)]
    assert not any(t.startswith("-") for t in tokens)
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) == 43 for t in tokens)  # 32 bytes, base64url without padding


def test_a_token_passes_as_an_option_value_without_an_equals_sign() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--enroll")
    for _ in range(200):
        token = new_token()
        assert parser.parse_args(["--enroll", token]).enroll == token
