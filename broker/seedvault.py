"""Server-side wallet chains, encrypted at rest (protocol.md, "Windows").

A server-side coin's seed ``w[n]`` and its pebbles (every
:data:`PEBBLE_EVERY`-th word, so any word costs at most that many hashes)
are sealed together with ChaCha20-Poly1305 under the broker's wallet data
key (``wallet-seed.key`` in the data dir, 32 random bytes, mode 0600, made
at first start). The associated data is the coin's id (and its length n),
so a sealed chain cannot be moved to another coin's row. No I/O here but the key file.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from netpay.chain import WORD_BYTES, Chain
from netpay.encoding import check_ecoin_id
from netpay.files import load_or_create_secret

__all__ = ["PEBBLE_EVERY", "SEED_KEY_FILE", "SeedVault"]

SEED_KEY_FILE = "wallet-seed.key"
PEBBLE_EVERY = 1024
_VERSION = b"\x01"
_NONCE_BYTES = 12
_AD_PREFIX = b"netpay-v1 server-side chain\x00"


def _ad(ecoin_id: str, n: int) -> bytes:
    return _AD_PREFIX + check_ecoin_id(ecoin_id).encode("ascii") + b"\x00" + str(n).encode()


class SeedVault:
    """Seals and opens server-side chains under one data key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the wallet data key must be 32 bytes")
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def open_dir(cls, data_dir: Path) -> SeedVault:
        """The vault of a data dir; its key is made (0600) at first start."""
        return cls(load_or_create_secret(data_dir / SEED_KEY_FILE))

    def seal(self, chain: Chain) -> bytes:
        """``version || nonce || ChaCha20-Poly1305(seed || pebbles)``, bound to the coin id."""
        assert chain.pebble_every == PEBBLE_EVERY
        plain = b"".join(chain.pebbles[i] for i in _pebble_indices(chain.n))
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plain, _ad(chain.ecoin_id.hex(), chain.n))
        return _VERSION + nonce + sealed

    def open(self, ecoin_id: str, n: int, blob: bytes) -> Chain:
        """The chain sealed for ``ecoin_id``; ValueError when it was not (tampered, moved)."""
        if len(blob) < 1 + _NONCE_BYTES or blob[:1] != _VERSION:
            raise ValueError("not a sealed chain")
        nonce = blob[1 : 1 + _NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, blob[1 + _NONCE_BYTES :], _ad(ecoin_id, n))
        except InvalidTag:
            raise ValueError("the sealed chain does not open for this coin") from None
        indices = _pebble_indices(n)
        if len(plain) != len(indices) * WORD_BYTES:
            raise ValueError("the sealed chain has the wrong length")
        pebbles = {i: plain[k * WORD_BYTES : (k + 1) * WORD_BYTES] for k, i in enumerate(indices)}
        return Chain(bytes.fromhex(ecoin_id), n, pebbles[n], pebbles, PEBBLE_EVERY)


def _pebble_indices(n: int) -> list[int]:
    """The kept words: every PEBBLE_EVERY-th index from 0, and n (the seed)."""
    indices = list(range(0, n, PEBBLE_EVERY))
    indices.append(n)
    return indices
