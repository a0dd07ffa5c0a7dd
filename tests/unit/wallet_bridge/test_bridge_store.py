"""The bridge's tables in the wallet store: approved origins and the daily cap.

The cap is checked in the transaction that moves a coin's index, so these
tests drive ``ranges.allocate`` directly (``StoreShortcuts.allocate``,
tests/fakes/wallet_store.py), also from several threads each with its own
store (as separate processes on one wallet would).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ewallet_client.domain import CoinEvent
from ewallet_client.store import (
    MAX_APPROVED_ORIGINS,
    ApprovedOrigin,
    BridgeCharge,
    effective_caps,
)
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.errors import Insufficient, InvalidArgument, LimitExceeded, PermissionDenied
from tests.fakes.wallet_store import StoreShortcuts

ORIGIN = "http://127.0.0.1:8001"
NOW_MS = 1_700_000_000_000
DAY = NOW_MS // 86_400_000


def _coin(store: StoreShortcuts, n: int = 1000, currency: str = "EUR") -> str:
    ecoin = new_ecoin_id()
    seed = new_seed()
    chain = Chain.make(ecoin, n, seed, pebble_every=64)
    store.add_pending_coin(
        ecoin_id=ecoin.hex(),
        request_id=ecoin.hex(),
        seed=seed,
        n=n,
        unit_value_minor=1,
        currency=currency,
        pebbles=chain.pebbles,
        now_ms=NOW_MS,
    )
    store.change_state(ecoin.hex(), CoinEvent.SOLD, touchstone=b"t", expires_at_ms=NOW_MS + 10**10)
    return ecoin.hex()


def _charge(click: int = 100, day: int = 500, origin: str = ORIGIN) -> BridgeCharge:
    return BridgeCharge(origin=origin, day=DAY, max_click_minor=click, max_day_minor=day)


def _allocate(store: StoreShortcuts, amount: int, charge: BridgeCharge | None) -> int:
    alloc = store.allocate(
        amount_minor=amount,
        currency="EUR",
        realm="daily",
        url=ORIGIN + "/articles/1",
        now_ms=NOW_MS,
        skew_ms=5000,
        charge=charge,
    )
    return alloc.index


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreShortcuts]:
    s = StoreShortcuts.open(tmp_path / "wallet")
    yield s
    s.close()


def test_approve_revoke_and_list(store: StoreShortcuts) -> None:
    assert store.approved_origins() == []
    a = store.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=50, now_ms=NOW_MS)
    assert a == ApprovedOrigin(ORIGIN, None, 50, NOW_MS)
    assert store.approved_origin(ORIGIN) == a
    # Approving again changes the caps, never adds a second row.
    b = store.approve_origin(ORIGIN, max_click_minor=7, max_day_minor=None, now_ms=NOW_MS + 1)
    assert store.approved_origins() == [b]
    assert b.to_json() == {
        "origin": ORIGIN,
        "max_click_minor": 7,
        "max_day_minor": None,
        "approved_at_ms": NOW_MS + 1,
    }
    assert store.revoke_origin(ORIGIN) is True
    assert store.revoke_origin(ORIGIN) is False
    assert store.approved_origin(ORIGIN) is None
    assert store.approved_origin("x" * 1000) is None


def test_the_number_of_approved_origins_is_bounded(store: StoreShortcuts) -> None:
    for i in range(MAX_APPROVED_ORIGINS):
        store.approve_origin(
            f"http://127.0.0.1:{i + 1}", max_click_minor=None, max_day_minor=None, now_ms=NOW_MS
        )
    with pytest.raises(InvalidArgument):
        store.approve_origin(ORIGIN + "0", max_click_minor=None, max_day_minor=None, now_ms=1)
    # Re-approving a known origin is still allowed.
    store.approve_origin("http://127.0.0.1:1", max_click_minor=1, max_day_minor=1, now_ms=1)


def test_effective_caps_take_the_lower() -> None:
    none = ApprovedOrigin(ORIGIN, None, None, 0)
    assert effective_caps(none, max_click_minor=100, max_day_minor=500) == (100, 500)
    low = ApprovedOrigin(ORIGIN, 10, 40, 0)
    assert effective_caps(low, max_click_minor=100, max_day_minor=500) == (10, 40)
    high = ApprovedOrigin(ORIGIN, 1000, 9000, 0)
    assert effective_caps(high, max_click_minor=100, max_day_minor=500) == (100, 500)


def test_a_charge_for_an_unapproved_origin_moves_nothing(store: StoreShortcuts) -> None:
    ecoin = _coin(store)
    with pytest.raises(PermissionDenied):
        _allocate(store, 5, _charge())
    assert store.coin(ecoin).index == 0
    assert store.outstanding_words(ecoin) == 0
    assert store.bridge_spending(ORIGIN, DAY) == {}


def test_the_daily_cap_refuses_and_moves_nothing(store: StoreShortcuts) -> None:
    ecoin = _coin(store)
    store.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=12, now_ms=NOW_MS)
    assert _allocate(store, 5, _charge()) == 5
    assert _allocate(store, 5, _charge()) == 10
    with pytest.raises(LimitExceeded, match="daily cap of 12"):
        _allocate(store, 5, _charge())
    assert store.coin(ecoin).index == 10
    assert store.outstanding_words(ecoin) == 10
    assert store.bridge_spending(ORIGIN, DAY) == {"EUR": (10, 2)}
    # Exactly up to the cap is allowed.
    assert _allocate(store, 2, _charge()) == 12
    assert store.bridge_spending(ORIGIN, DAY) == {"EUR": (12, 3)}
    # The next UTC day starts from nothing.
    tomorrow = BridgeCharge(ORIGIN, DAY + 1, 100, 500)
    assert _allocate(store, 5, tomorrow) == 17
    assert store.bridge_spending(ORIGIN, DAY + 1) == {"EUR": (5, 1)}


def test_the_click_cap_and_the_bridge_caps(store: StoreShortcuts) -> None:
    ecoin = _coin(store)
    store.approve_origin(ORIGIN, max_click_minor=4, max_day_minor=None, now_ms=NOW_MS)
    with pytest.raises(LimitExceeded, match="per-click cap of 4"):
        _allocate(store, 5, _charge())
    store.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=None, now_ms=NOW_MS)
    # Without its own caps the origin gets the bridge's.
    with pytest.raises(LimitExceeded, match="per-click cap of 3"):
        _allocate(store, 5, _charge(click=3))
    assert _allocate(store, 5, _charge(day=5)) == 5
    with pytest.raises(LimitExceeded):
        _allocate(store, 1, _charge(day=5))
    assert store.coin(ecoin).index == 5


def test_a_revoked_origin_cannot_spend_any_more(store: StoreShortcuts) -> None:
    _coin(store)
    store.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=None, now_ms=NOW_MS)
    _allocate(store, 5, _charge())
    store.revoke_origin(ORIGIN)
    with pytest.raises(PermissionDenied):
        _allocate(store, 5, _charge())
    # Re-approving the same day keeps what was spent.
    store.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=7, now_ms=NOW_MS)
    with pytest.raises(LimitExceeded):
        _allocate(store, 5, _charge())


def test_an_insufficient_wallet_charges_nothing(store: StoreShortcuts) -> None:
    _coin(store, n=3)
    store.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=None, now_ms=NOW_MS)
    with pytest.raises(Insufficient):
        _allocate(store, 5, _charge())
    assert store.bridge_spending(ORIGIN, DAY) == {}


def test_caps_are_per_origin(store: StoreShortcuts) -> None:
    _coin(store)
    other = "http://127.0.0.1:8002"
    for o in (ORIGIN, other):
        store.approve_origin(o, max_click_minor=None, max_day_minor=5, now_ms=NOW_MS)
    _allocate(store, 5, _charge())
    _allocate(store, 5, _charge(origin=other))
    with pytest.raises(LimitExceeded):
        _allocate(store, 1, _charge(origin=other))


def test_concurrent_clicks_never_pass_the_daily_cap(tmp_path: Path) -> None:
    """Twelve writers, each with its own store (engine), race for a cap of 5 clicks."""
    wallet_dir = tmp_path / "wallet"
    first = StoreShortcuts.open(wallet_dir)
    ecoin = _coin(first)
    first.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=25, now_ms=NOW_MS)
    stores = [StoreShortcuts.open(wallet_dir) for _ in range(12)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []
    lock = threading.Lock()

    def click(s: StoreShortcuts) -> None:
        start.wait()
        try:
            _allocate(s, 5, _charge())
            result = "paid"
        except LimitExceeded:
            result = "capped"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=click, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["capped"] * 7 + ["paid"] * 5
    assert first.coin(ecoin).index == 25
    assert first.outstanding_words(ecoin) == 25
    assert first.bridge_spending(ORIGIN, DAY) == {"EUR": (25, 5)}
    for s in [first, *stores]:
        s.close()
