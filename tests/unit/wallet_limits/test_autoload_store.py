"""Auto-load agreements in the wallet store, and the claim of the next purchase.

``claim_autoload`` decides in one transaction whether a purchase is due and
stores the new coin as pending with it: a pending one is always retried
first (same request id), and concurrent wallets start one purchase only.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ewallet_client.domain import CoinEvent, CoinState
from ewallet_client.store import NewCoin
from ewallet_client.wallet.coins import new_coin
from tests.fakes.broker import DAY_MS
from tests.fakes.wallet_store import StoreShortcuts

from .conftest import add_coin, allocate

NOW_MS = 1_800_000_000_000


def _new(units: int = 100, unit_value: int = 1, currency: str = "EUR") -> NewCoin:
    return new_coin(units, unit_value, currency)


def test_an_agreement_is_set_changed_and_turned_off(store: StoreShortcuts) -> None:
    assert store.autoload("EUR") is None and store.autoloads() == []
    a = store.set_autoload("EUR", below_minor=50, units=100, unit_value_minor=1, now_ms=NOW_MS)
    assert a.to_json() == {
        "currency": "EUR",
        "enabled": True,
        "below_minor": 50,
        "units": 100,
        "unit_value": 1,
        "value_minor": 100,
        "created_at_ms": NOW_MS,
        "last_attempt_at_ms": None,
        "last_ecoin_id": None,
        "last_error": None,
        "pending": False,
    }
    b = store.set_autoload("EUR", below_minor=20, units=10, unit_value_minor=2, now_ms=NOW_MS + 1)
    assert (b.below_minor, b.units, b.unit_value_minor, b.value_minor) == (20, 10, 2, 20)
    assert store.autoloads() == [b]
    off = store.autoload_off("EUR")
    assert off is not None and not off.enabled
    assert store.autoloads() == []
    assert store.autoloads(enabled_only=False) == [off]
    assert store.autoload_off("USD") is None


def test_the_usable_value_counts_active_unexpired_coins_of_the_currency(
    store: StoreShortcuts,
) -> None:
    add_coin(store, NOW_MS, 100)
    add_coin(store, NOW_MS, 10, unit_value_minor=3)
    add_coin(store, NOW_MS, 500, currency="USD")
    add_coin(store, NOW_MS, 400, expires_at_ms=NOW_MS + 1000)  # within the skew
    pending = _new(300)
    store.add_pending_coin(
        ecoin_id=pending.ecoin_id,
        request_id=pending.request_id,
        seed=pending.seed,
        n=pending.n,
        unit_value_minor=1,
        currency="EUR",
        pebbles=pending.pebbles,
        now_ms=NOW_MS,
    )
    allocate(store, 30, NOW_MS)
    assert store.usable_value_minor("EUR", now_ms=NOW_MS, skew_ms=5000) == 100 + 30 - 30


def test_a_purchase_is_claimed_only_below_the_threshold(store: StoreShortcuts) -> None:
    add_coin(store, NOW_MS, 60)
    store.set_autoload("EUR", below_minor=50, units=100, unit_value_minor=1, now_ms=NOW_MS)
    assert store.claim_autoload(_new(), now_ms=NOW_MS, skew_ms=0) is None  # 60 >= 50
    allocate(store, 11, NOW_MS)  # 49 left
    # Other terms than the agreement's (it changed meanwhile): nothing.
    assert store.claim_autoload(_new(99), now_ms=NOW_MS, skew_ms=0) is None
    coin = _new()
    claimed = store.claim_autoload(coin, now_ms=NOW_MS, skew_ms=0)
    assert claimed is not None
    pending, is_new = claimed
    assert is_new and pending.request_id == coin.request_id
    assert store.coin(coin.ecoin_id).state is CoinState.PENDING
    agreement = store.autoload("EUR")
    assert agreement is not None and agreement.pending
    assert agreement.last_ecoin_id == coin.ecoin_id

    # While it is pending, a claim returns it (the same request id), stores nothing.
    again = store.claim_autoload(_new(), now_ms=NOW_MS, skew_ms=0)
    assert again == (pending, False)
    assert store.autoload_pending("EUR") == pending
    assert len(store.coins()) == 2

    # Even off, the agreement still returns its pending purchase (to complete it).
    store.autoload_off("EUR")
    assert store.claim_autoload(_new(), now_ms=NOW_MS, skew_ms=0) == (pending, False)

    store.change_state(
        coin.ecoin_id, CoinEvent.SOLD, touchstone=b"t", expires_at_ms=NOW_MS + DAY_MS
    )
    assert store.autoload_pending("EUR") is None
    # Off and nothing pending: no purchase however low the balance.
    allocate(store, 100, NOW_MS)  # 49 left again
    assert store.claim_autoload(_new(), now_ms=NOW_MS, skew_ms=0) is None


def test_an_abandoned_purchase_lets_the_next_claim_start_a_new_one(store: StoreShortcuts) -> None:
    store.set_autoload("EUR", below_minor=50, units=100, unit_value_minor=1, now_ms=NOW_MS)
    first = store.claim_autoload(_new(), now_ms=NOW_MS, skew_ms=0)
    assert first is not None
    store.change_state(first[0].ecoin_id, CoinEvent.REFUSED)
    store.autoload_attempted(
        "EUR", now_ms=NOW_MS, ecoin_id=first[0].ecoin_id, error="insufficient: no money"
    )
    agreement = store.autoload("EUR")
    assert agreement is not None and agreement.last_error == "insufficient: no money"
    assert not agreement.pending
    second = store.claim_autoload(_new(), now_ms=NOW_MS + 1, skew_ms=0)
    assert second is not None and second[1]
    assert second[0].request_id != first[0].request_id


def test_concurrent_wallets_start_one_purchase(tmp_path: Path) -> None:
    wallet_dir = tmp_path / "store"
    first = StoreShortcuts.open(wallet_dir)
    first.set_autoload("EUR", below_minor=50, units=64, unit_value_minor=1, now_ms=NOW_MS)
    stores = [StoreShortcuts.open(wallet_dir) for _ in range(6)]
    coins = [_new(64) for _ in stores]
    barrier = threading.Barrier(len(stores))
    claims: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def claim(s: StoreShortcuts, coin: NewCoin) -> None:
        barrier.wait()
        got = s.claim_autoload(coin, now_ms=NOW_MS, skew_ms=0)
        assert got is not None
        with lock:
            claims.append((got[0].request_id, got[1]))

    threads = [threading.Thread(target=claim, args=sc) for sc in zip(stores, coins, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(claims) == len(stores)
    assert len({request_id for request_id, _ in claims}) == 1
    assert sum(is_new for _, is_new in claims) == 1
    assert len(first.coins()) == 1
    for s in [first, *stores]:
        s.close()
