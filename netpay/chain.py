"""The payword chain (protocol.md, "The payword chain").

``w[i] = SHA-256("NP1" || ecoin_id || uint32_be(i) || w[i+1])`` for
``i = n-1 .. 0``; ``w[n]`` is a 32-byte seed and ``w[0]`` the root. Each step
hashes exactly 55 bytes, one SHA-256 block.

No party ever publishes a word in a refusal (protocol.md revision 1.1, change
1): a refusal names an index and :func:`seen_of` its word, and only after
:func:`is_genuine` showed that the word the caller presented is the coin's.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "MAX_CHAIN_UNITS",
    "SEEN_BYTES",
    "WORD_BYTES",
    "Chain",
    "hash_down",
    "is_genuine",
    "new_ecoin_id",
    "new_seed",
    "seen_of",
    "step",
    "verify_word",
]

WORD_BYTES = 32
MAX_CHAIN_UNITS = 2**20
SEEN_BYTES = 32
_PREFIX = b"NP1"
_SEEN_PREFIX = b"NP1-seen"
_U32 = struct.Struct(">I")


def new_ecoin_id() -> bytes:
    """16 random bytes from the OS CSPRNG."""
    return secrets.token_bytes(16)


def new_seed() -> bytes:
    """A fresh seed ``w[n]``: 32 bytes from the OS CSPRNG."""
    return secrets.token_bytes(WORD_BYTES)


def step(ecoin_id: bytes, i: int, upper: bytes) -> bytes:
    """``w[i]`` from ``w[i+1]``."""
    return hashlib.sha256(_PREFIX + ecoin_id + _U32.pack(i) + upper).digest()


def hash_down(ecoin_id: bytes, j: int, word: bytes, i: int) -> bytes:
    """Hash ``w[j]`` down to ``w[i]`` (``j - i`` steps). Callers bound ``j - i``."""
    assert 0 <= i <= j, (i, j)
    assert len(ecoin_id) == 16 and len(word) == WORD_BYTES
    sha256 = hashlib.sha256
    pack = _U32.pack
    prefix = _PREFIX + ecoin_id
    for k in range(j - 1, i - 1, -1):
        word = sha256(prefix + pack(k) + word).digest()
    return word


def verify_word(
    ecoin_id: bytes, known_index: int, known_word: bytes, j: int, word: bytes, max_steps: int
) -> bool:
    """True when ``word`` is ``w[j]`` of the chain through ``(known_index, known_word)``.

    ``j - known_index`` is checked against ``max_steps`` before any hashing,
    so no input can make a verifier hash for long.
    """
    if len(word) != WORD_BYTES or j <= known_index or j - known_index > max_steps:
        return False
    return secrets.compare_digest(hash_down(ecoin_id, j, word, known_index), known_word)


def seen_of(word: bytes) -> bytes:
    """``SHA-256("NP1-seen" || w[index])``: what a refusal carries instead of the word.

    It lets a wallet check a vendor's (or the broker's) index against its own
    word there, and proves nothing to anyone else: it is no word of the chain
    (the chain's steps hash with ``"NP1" || ecoin_id || i``) and it cannot be
    turned back into one. The one place it is computed.
    """
    assert len(word) == WORD_BYTES, len(word)
    return hashlib.sha256(_SEEN_PREFIX + word).digest()


def is_genuine(
    ecoin_id: bytes, known: Iterable[tuple[int, bytes]], j: int, word: bytes, max_steps: int
) -> bool:
    """True when ``word`` is shown to be ``w[j]`` of the coin by the words the caller holds.

    ``known`` are ``(index, word)`` pairs of the coin the caller holds. ``word``
    is genuine when it hashes down to the nearest known word at or below ``j``,
    or the nearest known word above ``j`` hashes down to it, in at most
    ``max_steps`` steps (checked before any hashing). Only a genuine word earns
    a refusal that names an index and its :func:`seen_of`.
    """
    if len(word) != WORD_BYTES or not 0 <= j <= MAX_CHAIN_UNITS:
        return False
    below: tuple[int, bytes] | None = None
    above: tuple[int, bytes] | None = None
    for index, kept in known:
        if index <= j and (below is None or index > below[0]):
            below = (index, kept)
        if index > j and (above is None or index < above[0]):
            above = (index, kept)
    if (
        below is not None
        and j - below[0] <= max_steps
        and secrets.compare_digest(hash_down(ecoin_id, j, word, below[0]), below[1])
    ):
        return True
    if above is not None and above[0] - j <= max_steps:
        return secrets.compare_digest(hash_down(ecoin_id, above[0], above[1], j), word)
    return False


@dataclass(frozen=True)
class Chain:
    """A whole chain, as the maker (wallet or broker) holds it.

    ``pebble_every`` words are kept in memory (a full chain when 1), so that
    ``word(j)`` costs at most ``pebble_every - 1`` hashes.
    """

    ecoin_id: bytes
    n: int
    seed: bytes
    pebbles: dict[int, bytes]
    pebble_every: int

    @classmethod
    def make(cls, ecoin_id: bytes, n: int, seed: bytes, *, pebble_every: int = 1) -> Chain:
        if not 1 <= n <= MAX_CHAIN_UNITS:
            raise ValueError(f"chain length must be 1..{MAX_CHAIN_UNITS}")
        if len(ecoin_id) != 16 or len(seed) != WORD_BYTES or pebble_every < 1:
            raise ValueError("ecoin id must be 16 bytes, seed 32 bytes")
        pebbles: dict[int, bytes] = {n: seed}
        word = seed
        for i in range(n - 1, -1, -1):
            word = step(ecoin_id, i, word)
            if i % pebble_every == 0:
                pebbles[i] = word
        return cls(ecoin_id, n, seed, pebbles, pebble_every)

    @property
    def root(self) -> bytes:
        return self.pebbles[0]

    def word(self, j: int) -> bytes:
        """``w[j]`` for ``0 <= j <= n``."""
        if not 0 <= j <= self.n:
            raise IndexError(j)
        if j in self.pebbles:
            return self.pebbles[j]
        upper = min(self.n, (j // self.pebble_every + 1) * self.pebble_every)
        return hash_down(self.ecoin_id, upper, self.pebbles[upper], j)

    def words(self) -> Iterator[tuple[int, bytes]]:
        """``(i, w[i])`` for every kept pebble, lowest index first."""
        for i in sorted(self.pebbles):
            yield i, self.pebbles[i]
