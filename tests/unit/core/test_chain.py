"""The payword chain: the protocol's test vector and the verifier's bounds."""

from __future__ import annotations

import hashlib

import pytest

from netpay.chain import (
    MAX_CHAIN_UNITS,
    Chain,
    hash_down,
    is_genuine,
    seen_of,
    step,
    verify_word,
)

VECTOR_ID = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
VECTOR_SEED = b"\x11" * 32
VECTOR = {
    3: "8284776127d8ad13bf79aa9301e7d74d0157e5c0a5460b7b68643954569cbe46",
    2: "3511ef6f7ac6ce3fdd5d222e7c1dd9e6aa99f2eb15a5c0bcdc9bde5cc7b60cdd",
    1: "4dd4f12ed063905a5967109d9667a145633e5be1a4df0d8e2c875e01113e53ab",
    0: "69f52f76dc46c2a075e7bdfa0e9154691aca8faaeca46af41592749dc0d11fc9",
}


def test_protocol_test_vector() -> None:
    chain = Chain.make(VECTOR_ID, 4, VECTOR_SEED)
    assert chain.word(4) == VECTOR_SEED
    for i, hex_word in VECTOR.items():
        assert chain.word(i).hex() == hex_word
    assert chain.root.hex() == VECTOR[0]


def test_step_input_is_one_55_byte_block() -> None:
    # "NP1" (3) + ecoin id (16) + uint32 (4) + word (32) = 55 bytes.
    import hashlib

    data = b"NP1" + VECTOR_ID + (3).to_bytes(4, "big") + VECTOR_SEED
    assert len(data) == 55
    assert step(VECTOR_ID, 3, VECTOR_SEED) == hashlib.sha256(data).digest()


@pytest.mark.parametrize("pebble_every", [1, 3, 64])
def test_pebbles_give_the_same_words(pebble_every: int) -> None:
    full = Chain.make(VECTOR_ID, 200, VECTOR_SEED)
    sparse = Chain.make(VECTOR_ID, 200, VECTOR_SEED, pebble_every=pebble_every)
    assert all(full.word(j) == sparse.word(j) for j in range(201))


def test_hash_down_and_verify() -> None:
    chain = Chain.make(VECTOR_ID, 50, VECTOR_SEED)
    assert hash_down(VECTOR_ID, 40, chain.word(40), 7) == chain.word(7)
    assert verify_word(VECTOR_ID, 7, chain.word(7), 40, chain.word(40), max_steps=33)
    # One step more than allowed is refused before hashing.
    assert not verify_word(VECTOR_ID, 7, chain.word(7), 40, chain.word(40), max_steps=32)
    assert not verify_word(VECTOR_ID, 7, chain.word(7), 40, chain.word(39), max_steps=100)
    assert not verify_word(VECTOR_ID, 7, chain.word(7), 7, chain.word(7), max_steps=100)
    assert not verify_word(VECTOR_ID, 7, chain.word(7), 40, b"short", max_steps=100)


def test_words_are_bound_to_the_coin() -> None:
    other_id = bytes(16)
    a = Chain.make(VECTOR_ID, 10, VECTOR_SEED)
    b = Chain.make(other_id, 10, VECTOR_SEED)
    assert a.root != b.root
    assert not verify_word(other_id, 0, b.root, 5, a.word(5), max_steps=10)


@pytest.mark.parametrize("n", [0, MAX_CHAIN_UNITS + 1])
def test_chain_length_limits(n: int) -> None:
    with pytest.raises(ValueError, match="chain length"):
        Chain.make(VECTOR_ID, n, VECTOR_SEED)


def test_word_out_of_range() -> None:
    chain = Chain.make(VECTOR_ID, 4, VECTOR_SEED)
    with pytest.raises(IndexError):
        chain.word(5)


def test_seen_is_sha256_of_the_tag_and_the_word_and_no_word_of_the_chain() -> None:
    chain = Chain.make(bytes(range(16)), 20, b"\x11" * 32)
    word = chain.word(7)
    assert seen_of(word) == hashlib.sha256(b"NP1-seen" + word).digest()
    assert seen_of(word) not in {chain.word(i) for i in range(21)}
    assert seen_of(word) != step(chain.ecoin_id, 6, word)  # and no step of the chain


def test_a_word_is_genuine_when_it_meets_a_held_word_within_the_bound() -> None:
    chain = Chain.make(bytes(range(16)), 50, b"\x22" * 32)
    e = chain.ecoin_id
    held = [(10, chain.word(10)), (30, chain.word(30))]
    for j in (10, 12, 14, 26, 30, 33):  # at, above (hashes down) or below (held hashes down)
        assert is_genuine(e, held, j, chain.word(j), 4), j
    assert not is_genuine(e, held, 20, chain.word(20), 4)  # 10 and 10 steps away
    assert is_genuine(e, held, 20, chain.word(20), 10)
    assert not is_genuine(e, held, 12, chain.word(13), 4)  # another position's word
    assert not is_genuine(e, held, 12, bytes(32), 4)
    assert not is_genuine(e, held, 12, chain.word(12)[:31], 4)
    assert not is_genuine(e, [], 12, chain.word(12), 4)
    assert not is_genuine(e, held, -1, chain.word(0), 4)
    assert not is_genuine(e, held, MAX_CHAIN_UNITS + 1, bytes(32), 2**30)
    other = Chain.make(bytes(16), 50, b"\x22" * 32)  # the same seed, another coin
    assert not is_genuine(other.ecoin_id, held, 12, chain.word(12), 4)
