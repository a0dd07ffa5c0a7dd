"""Server-side wallet rules without I/O: the sealed chain, the window seam, DrawWindow."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.domain import (
    AcquireDecision,
    CoinRecordView,
    CoinState,
    DrawWindow,
    IndexedWord,
    WindowRequest,
    allowed_window_units,
    decide_acquire,
    transition,
)
from broker.seedvault import PEBBLE_EVERY, SeedVault
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.errors import (
    CoinBusy,
    Expired,
    Insufficient,
    InvalidArgument,
    LimitExceeded,
    PreconditionFailed,
    Revoked,
)

ECOIN = bytes(range(16))
CHAIN = Chain.make(ECOIN, 3000, b"\x22" * 32, pebble_every=PEBBLE_EVERY)
NOW_MS = 1_000_000


def held(**changes: object) -> CoinRecordView:
    base = CoinRecordView(
        ecoin_id=ECOIN.hex(),
        n=CHAIN.n,
        unit_value_minor=1,
        expires_at_ms=NOW_MS * 10,
        state=CoinState.HELD,
        frozen=False,
        holder="v1",
        epoch=1,
        latest=IndexedWord(10, CHAIN.word(10)),
        lease_expires_ms=NOW_MS + 60_000,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def draw(at: int, **kw: object) -> DrawWindow:
    fields: dict[str, object] = {
        "vendor_id": "v1",
        "epoch": 1,
        "at": IndexedWord(at, CHAIN.word(at)),
        "now_ms": NOW_MS,
    }
    fields.update(kw)
    return DrawWindow(**fields)  # type: ignore[arg-type]


# -- the sealed chain --------------------------------------------------------------------


def test_a_sealed_chain_opens_to_the_same_words() -> None:
    vault = SeedVault(b"\x01" * 32)
    blob = vault.seal(CHAIN)
    assert CHAIN.seed not in blob and CHAIN.word(1024) not in blob
    opened = vault.open(ECOIN.hex(), CHAIN.n, blob)
    assert opened.root == CHAIN.root and opened.seed == CHAIN.seed
    for j in (0, 1, 1023, 1024, 1025, 2999, 3000):
        assert opened.word(j) == CHAIN.word(j)


def test_a_sealed_chain_is_bound_to_its_coin_key_and_bytes() -> None:
    vault = SeedVault(b"\x01" * 32)
    blob = vault.seal(CHAIN)
    with pytest.raises(ValueError):
        vault.open(new_ecoin_id().hex(), CHAIN.n, blob)  # another coin (associated data)
    with pytest.raises(ValueError):
        SeedVault(b"\x02" * 32).open(ECOIN.hex(), CHAIN.n, blob)  # another key
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(ValueError):
        vault.open(ECOIN.hex(), CHAIN.n, tampered)
    with pytest.raises(ValueError):
        vault.open(ECOIN.hex(), CHAIN.n - 1, blob)  # wrong length for another n
    with pytest.raises(ValueError):
        vault.open(ECOIN.hex(), CHAIN.n, b"\x02" + blob[1:])  # unknown version


def test_two_seals_of_one_chain_differ() -> None:
    vault = SeedVault(b"\x01" * 32)
    small = Chain.make(new_ecoin_id(), 5, new_seed(), pebble_every=PEBBLE_EVERY)
    assert vault.seal(small) != vault.seal(small)  # fresh nonces


# -- the spending seam ------------------------------------------------------------------------


def request(units: int, **kw: int) -> WindowRequest:
    fields = {
        "units": units,
        "latest_index": 10,
        "n": 100,
        "max_window_units": 50,
        "grant_max_units": 90,
        "grant_drawn_units": 0,
    }
    fields.update(kw)
    return WindowRequest(**fields)


def test_allowed_window_units() -> None:
    assert allowed_window_units(request(50)) == 50
    assert allowed_window_units(request(1)) == 1
    with pytest.raises(InvalidArgument):
        allowed_window_units(request(0))
    with pytest.raises(LimitExceeded):
        allowed_window_units(request(51))
    with pytest.raises(Insufficient):
        allowed_window_units(request(41, latest_index=60))
    assert allowed_window_units(request(40, latest_index=60)) == 40
    with pytest.raises(LimitExceeded):
        allowed_window_units(request(11, grant_drawn_units=80))
    assert allowed_window_units(request(10, grant_drawn_units=80)) == 10


# -- DrawWindow through the one transition function -------------------------------------------


def test_a_draw_moves_the_latest_word_and_keeps_the_lease() -> None:
    after = transition(held(), draw(40))
    assert after.latest == IndexedWord(40, CHAIN.word(40))
    assert (after.epoch, after.holder, after.lease_expires_ms) == (1, "v1", NOW_MS + 60_000)


@pytest.mark.parametrize(
    ("coin", "event", "error"),
    [
        (held(holder="v2"), draw(40), PreconditionFailed),
        (held(), draw(40, epoch=2), PreconditionFailed),
        (held(lease_expires_ms=NOW_MS), draw(40), PreconditionFailed),
        (held(lease_expires_ms=None), draw(40), PreconditionFailed),
        (held(grant_epoch=1, grant_to_vendor="v2"), draw(40), CoinBusy),
        (held(frozen=True), draw(40), Revoked),
        (held(expires_at_ms=NOW_MS), draw(40), Expired),
        (held(), draw(10), PreconditionFailed),
        (held(state=CoinState.FREE, holder=None), draw(40), PreconditionFailed),
        (held(state=CoinState.RECALLING), draw(40), PreconditionFailed),
    ],
)
def test_draws_that_are_refused(
    coin: CoinRecordView, event: DrawWindow, error: type[Exception]
) -> None:
    with pytest.raises(error):
        transition(coin, event)


def test_a_handoff_grant_of_an_older_epoch_does_not_block() -> None:
    coin = held(epoch=2, grant_epoch=1)
    assert transition(coin, draw(40, epoch=2)).latest.index == 40


def test_a_grant_proof_replaces_the_payword_proof() -> None:
    free = held(state=CoinState.FREE, holder=None, epoch=0, lease_expires_ms=None)
    decision = decide_acquire(free, "v2", NOW_MS, 0, b"", bound_units=100, grant_proof=True)
    assert decision is AcquireDecision.GRANT
    assert decide_acquire(held(), "v2", NOW_MS, 0, b"", bound_units=100, grant_proof=True) is (
        AcquireDecision.HANDOFF
    )
