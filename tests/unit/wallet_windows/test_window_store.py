"""Window allocation in the wallet store: one transaction, never an overlap, caps."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ewallet_client.domain import CoinEvent, WindowEvent, WindowState
from ewallet_client.store import BridgeCharge, WindowRequest
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.errors import Insufficient, LimitExceeded, PermissionDenied, PreconditionFailed
from tests.fakes.wallet_store import StoreShortcuts

ORIGIN = "http://127.0.0.1:8001"
NOW_MS = 1_700_000_000_000
DAY = NOW_MS // 86_400_000


def _coin(store: StoreShortcuts, n: int = 1000, unit_value: int = 1) -> str:
    ecoin = new_ecoin_id()
    seed = new_seed()
    chain = Chain.make(ecoin, n, seed, pebble_every=64)
    store.add_pending_coin(
        ecoin_id=ecoin.hex(),
        request_id=ecoin.hex(),
        seed=seed,
        n=n,
        unit_value_minor=unit_value,
        currency="EUR",
        pebbles=chain.pebbles,
        now_ms=NOW_MS,
    )
    store.change_state(ecoin.hex(), CoinEvent.SOLD, touchstone=b"t", expires_at_ms=NOW_MS + 10**10)
    return ecoin.hex()


def _window(
    store: StoreShortcuts,
    units: int,
    *,
    price: int = 5,
    realm: str = "daily",
    origin: str | None = ORIGIN,
    charge: BridgeCharge | None = None,
) -> tuple[int, int, int | None]:
    alloc = store.allocate(
        amount_minor=price,
        currency="EUR",
        realm=realm,
        url=ORIGIN + "/",
        now_ms=NOW_MS,
        skew_ms=5000,
        charge=charge,
        window=WindowRequest(units, origin),
    )
    return alloc.prev, alloc.index, alloc.window_id


def _click(store: StoreShortcuts, amount: int = 3, realm: str = "daily") -> tuple[int, int]:
    alloc = store.allocate(
        amount_minor=amount,
        currency="EUR",
        realm=realm,
        url=ORIGIN + "/articles/1",
        now_ms=NOW_MS,
        skew_ms=5000,
    )
    return alloc.prev, alloc.index


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreShortcuts]:
    s = StoreShortcuts.open(tmp_path / "wallet")
    yield s
    s.close()


def test_a_window_moves_the_index_by_m_and_records_the_window(store: StoreShortcuts) -> None:
    ecoin = _coin(store)
    assert _click(store) == (0, 3)
    prev, index, window_id = _window(store, 20)
    assert (prev, index) == (3, 23)
    assert window_id is not None
    w = store.window(window_id)
    assert w.state is WindowState.OPENING and (w.window_from, w.window_top) == (3, 23)
    assert (w.ecoin_id, w.vendor_id, w.origin, w.units) == (ecoin, "daily", ORIGIN, 20)
    assert store.coin(ecoin).index == 23
    assert store.outstanding_words(ecoin) == 23  # both headers, until accepted
    assert _click(store) == (23, 26)
    opened = store.window_opened(
        window_id, epoch=3, expires_at_ms=NOW_MS + 1, handle="h" * 43, consumed_index=3
    )
    assert opened.state is WindowState.OPEN and opened.words_left == 20
    assert store.coin(ecoin).accepted_index == 23
    assert store.outstanding_words(ecoin) == 3  # the click above the window is still out
    assert store.window_handle(window_id) == "h" * 43


def test_the_bridge_window_records_no_window(store: StoreShortcuts) -> None:
    _coin(store)
    assert _window(store, 10, origin=None) == (0, 10, None)
    assert store.windows() == []


def test_windows_need_enough_words_and_a_dividing_unit_value(store: StoreShortcuts) -> None:
    _coin(store, n=30, unit_value=2)
    with pytest.raises(Insufficient):
        _window(store, 31, price=4)
    with pytest.raises(Insufficient):
        _window(store, 10, price=5)  # 2 does not divide 5: clicks could not use it
    assert _window(store, 30, price=4)[:2] == (0, 30)


def test_a_coin_with_a_window_elsewhere_comes_last(store: StoreShortcuts) -> None:
    first = _coin(store)
    second = _coin(store)
    _, _, window_id = _window(store, 10)
    assert window_id is not None
    holder = store.window(window_id).ecoin_id
    other = second if holder == first else first
    # A click at another vendor does not take the coin whose window it would close.
    alloc = store.allocate(
        amount_minor=3, currency="EUR", realm="gazette", url="x", now_ms=NOW_MS, skew_ms=0
    )
    assert alloc.coin.ecoin_id == other
    # At the window's own vendor it does not matter.
    store.change_window(window_id, WindowEvent.REFUSED, now_ms=NOW_MS)
    alloc = store.allocate(
        amount_minor=3, currency="EUR", realm="gazette", url="x", now_ms=NOW_MS, skew_ms=0
    )
    assert alloc.coin.ecoin_id in (first, second)


def test_window_states_move_only_through_the_transition_function(store: StoreShortcuts) -> None:
    _coin(store)
    _, _, window_id = _window(store, 10)
    assert window_id is not None
    with pytest.raises(PreconditionFailed):
        store.change_window(window_id, WindowEvent.CLICK_REFUSED, now_ms=NOW_MS)
    store.window_opened(
        window_id, epoch=1, expires_at_ms=NOW_MS + 1, handle="x" * 43, consumed_index=0
    )
    store.change_window(window_id, WindowEvent.CLICK_REFUSED, now_ms=NOW_MS)
    gone = store.change_window(window_id, WindowEvent.VANISHED, now_ms=NOW_MS + 5)
    assert gone.state is WindowState.GONE and gone.closed_at_ms == NOW_MS + 5
    assert store.window_handle(window_id) is None
    with pytest.raises(PreconditionFailed):
        store.change_window(window_id, WindowEvent.VANISHED, now_ms=NOW_MS)


def test_concurrent_windows_and_clicks_never_overlap(tmp_path: Path) -> None:
    wallet_dir = tmp_path / "wallet"
    setup = StoreShortcuts.open(wallet_dir)
    ecoin = _coin(setup, n=5000)
    ranges: list[tuple[int, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker(k: int) -> None:
        store = StoreShortcuts.open(wallet_dir)  # as another process would
        try:
            start.wait()
            for i in range(15):
                if (i + k) % 3 == 0:
                    prev, index, _ = _window(store, 7 + k)
                else:
                    prev, index = _click(store)
                with lock:
                    ranges.append((prev, index))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    ranges.sort()
    assert len(ranges) == 90
    for (_, top), (nxt, _) in itertools.pairwise(ranges):
        assert top == nxt  # contiguous: no overlap, no hole
    assert ranges[0][0] == 0 and ranges[-1][1] == setup.coin(ecoin).index
    assert len(setup.windows()) == sum(1 for k in range(6) for i in range(15) if (i + k) % 3 == 0)
    setup.close()


def _charge(click: int = 10, day: int = 100) -> BridgeCharge:
    return BridgeCharge(origin=ORIGIN, day=DAY, max_click_minor=click, max_day_minor=day)


def test_a_bridge_window_counts_m_times_u_against_the_daily_cap_only(
    store: StoreShortcuts,
) -> None:
    _coin(store, unit_value=2)
    store.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=None, now_ms=NOW_MS)
    # 30 words x 2 = 60 minor units: above the per-click cap of 10, fine for a window.
    assert _window(store, 30, price=4, origin=None, charge=_charge())[:2] == (0, 30)
    assert store.bridge_spending(ORIGIN, DAY) == {"EUR": (60, 1)}
    with pytest.raises(LimitExceeded):
        _window(store, 21, price=4, origin=None, charge=_charge())  # 60 + 42 > 100
    assert store.coin(store.coins()[0].ecoin_id).index == 30  # nothing moved
    assert _window(store, 20, price=4, origin=None, charge=_charge())[:2] == (30, 50)
    assert store.bridge_spending(ORIGIN, DAY) == {"EUR": (100, 2)}
    store.revoke_origin(ORIGIN)
    with pytest.raises(PermissionDenied):
        _window(store, 1, price=4, origin=None, charge=_charge(day=10**6))


def test_concurrent_bridge_windows_never_pass_the_daily_cap(tmp_path: Path) -> None:
    wallet_dir = tmp_path / "wallet"
    setup = StoreShortcuts.open(wallet_dir)
    _coin(setup, n=5000)
    setup.approve_origin(ORIGIN, max_click_minor=None, max_day_minor=None, now_ms=NOW_MS)
    granted: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        store = StoreShortcuts.open(wallet_dir)
        try:
            start.wait()
            for _ in range(5):
                try:
                    prev, index, _ = _window(store, 9, origin=None, charge=_charge(day=200))
                except LimitExceeded:
                    with lock:
                        refused.append(1)
                else:
                    with lock:
                        granted.append(index - prev)
        finally:
            store.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(granted) == 9 * (200 // 9) == setup.bridge_spending(ORIGIN, DAY)["EUR"][0]
    assert len(granted) + len(refused) == 40
    assert setup.coins()[0].index == sum(granted)
    setup.close()
