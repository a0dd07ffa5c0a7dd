"""Helpers every area of :mod:`broker.services` shares (no use case lives here).

Tokens and their stored hashes, password and session-token rules, the
failed-attempt limit's arithmetic, envelopes read back from storage, the
coin row a use case changes (read ``FOR UPDATE``, written with a
compare-and-set that answers Conflict when the row moved), and every word
of a coin the broker holds (:func:`known_words`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable, Sequence

from broker.domain import CoinRecordView, EpochView, IndexedWord
from broker.storage import Repos, StoredCoin
from netpay.encoding import b64url_encode
from netpay.errors import Conflict, InvalidArgument, NotFound
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MAX_SESSION_TOKEN_CHARS",
    "MIN_PASSWORD_CHARS",
    "PORTAL_SESSION_TTL_S",
    "apply_coin",
    "check_new_password",
    "coin_for_update",
    "envelope",
    "hash_token",
    "known_words",
    "new_token",
    "retry_after_s",
    "session_hash",
]

MAX_PASSWORD_CHARS = 256
MIN_PASSWORD_CHARS = 8
MAX_SESSION_TOKEN_CHARS = 64
# A portal session, and a browser's wallet session, last at most this long.
PORTAL_SESSION_TTL_S = 12 * 3600


def new_token() -> str:
    """32 random bytes, base64url, never starting with ``-``.

    Operators paste tokens onto command lines (``netpay vendor serve --enroll
    TOKEN``), where a leading ``-`` reads as an option; one base64url token in
    64 would start with one. Drawing again costs under 0.03 bits of the 256.
    """
    while True:
        token = b64url_encode(secrets.token_bytes(32))
        if not token.startswith("-"):
            return token


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def session_hash(token: str) -> bytes | None:
    """The stored hash of a portal session token, None for one that cannot be ours."""
    if not 1 <= len(token) <= MAX_SESSION_TOKEN_CHARS:
        return None
    return hash_token(token)


def check_new_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidArgument(
            f"password must have {MIN_PASSWORD_CHARS}..{MAX_PASSWORD_CHARS} characters"
        )


def retry_after_s(
    failures_ms: Sequence[int], max_failures: int, window_s: int, now_ms: int
) -> int | None:
    """With ``max_failures`` or more failures (oldest first) in the window: the seconds
    until the oldest of the last ``max_failures`` leaves it; else None."""
    if len(failures_ms) < max_failures:
        return None
    unblock_ms = failures_ms[-max_failures] + window_s * 1000
    return max(1, math.ceil((unblock_ms - now_ms) / 1000))


def envelope(data: bytes) -> pb.Envelope:
    env = pb.Envelope()
    env.ParseFromString(data)
    return env


def coin_for_update(repos: Repos, ecoin_id: str) -> StoredCoin:
    stored = repos.coins.get(ecoin_id, for_update=True)
    if stored is None:
        raise NotFound(f"no coin {ecoin_id}")
    return stored


def apply_coin(repos: Repos, before: CoinRecordView, after: CoinRecordView) -> None:
    """Write a transition; Conflict when the coin's row moved since ``before`` was read."""
    if not repos.coins.apply(before, after):
        raise Conflict("the coin changed meanwhile; read it again")


def known_words(
    repos: Repos, coin: CoinRecordView, epochs: Iterable[EpochView] | None = None
) -> list[IndexedWord]:
    """Every word of the coin the broker holds: its latest, the epochs' bases and ends
    (``epochs``, or all of the coin's), the tops of the claims it paid."""
    words = [coin.latest]
    for epoch in repos.coins.epochs(coin.ecoin_id) if epochs is None else epochs:
        words.append(epoch.base)
        if epoch.end is not None:
            words.append(epoch.end)
    words.extend(repos.redemption.claimed_words(coin.ecoin_id))
    return words
