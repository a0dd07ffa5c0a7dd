"""The wallet store: private files, pebbles, atomic allocation, coin states."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import ewallet_client
from ewallet_client.domain import CoinEvent, CoinState
from ewallet_client.store import DB_NAME, PEBBLE_EVERY, WalletStore
from netpay.chain import Chain, hash_down, new_ecoin_id, new_seed
from netpay.clock import FakeClock
from netpay.errors import Insufficient, PreconditionFailed
from tests.fakes.wallet_store import StoreShortcuts

REPO = Path(ewallet_client.__file__).resolve().parents[1]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_store_files_are_private(tmp_path: Path, add_coin: Any) -> None:
    wallet_dir = tmp_path / "w"
    wallet_dir.mkdir(mode=0o755)
    os.chmod(wallet_dir, 0o755)
    store = StoreShortcuts.open(wallet_dir)
    add_coin(store)  # writes: the WAL and shared-memory files exist now
    try:
        assert _mode(wallet_dir) == 0o700
        files = [wallet_dir / DB_NAME, wallet_dir / f"{DB_NAME}-wal", wallet_dir / f"{DB_NAME}-shm"]
        for f in files:
            assert f.exists(), f
            assert _mode(f) == 0o600, (f, oct(_mode(f)))
    finally:
        store.close()
    # a store opened on an existing file with loose permissions tightens them
    os.chmod(wallet_dir / DB_NAME, 0o644)
    WalletStore(wallet_dir).close()
    assert _mode(wallet_dir / DB_NAME) == 0o600


@pytest.mark.parametrize("n", [1, 63, 64, 65, 130, 200])
def test_word_from_pebbles_matches_the_chain(tmp_path: Path, n: int) -> None:
    store = StoreShortcuts.open(tmp_path / "w")
    ecoin = new_ecoin_id()
    seed = new_seed()
    chain = Chain.make(ecoin, n, seed, pebble_every=PEBBLE_EVERY)
    full = Chain.make(ecoin, n, seed)
    assert set(chain.pebbles) == {i for i in range(0, n, PEBBLE_EVERY)} | {n}
    store.add_pending_coin(
        ecoin_id=ecoin.hex(),
        request_id="r1",
        seed=seed,
        n=n,
        unit_value_minor=1,
        currency="EUR",
        pebbles=chain.pebbles,
        now_ms=1,
    )
    try:
        for j in range(n + 1):
            assert store.word(ecoin.hex(), j) == full.word(j)
        with pytest.raises(IndexError):
            store.word(ecoin.hex(), n + 1)
    finally:
        store.close()


def test_allocation_moves_the_index_and_never_reuses_a_range(
    tmp_path: Path, add_coin: Any, clock: FakeClock
) -> None:
    store = StoreShortcuts.open(tmp_path / "w")
    ecoin = add_coin(store, n=20)
    try:
        ranges = []
        for _ in range(4):
            a = store.allocate(
                amount_minor=5,
                currency="EUR",
                realm="daily",
                url="http://127.0.0.1/a",
                now_ms=clock.now_ms(),
                skew_ms=5000,
            )
            ranges.append((a.prev, a.index))
        assert ranges == [(0, 5), (5, 10), (10, 15), (15, 20)]
        assert store.coin(ecoin).index == 20
        assert store.outstanding_words(ecoin) == 20
        with pytest.raises(Insufficient):
            store.allocate(
                amount_minor=5,
                currency="EUR",
                realm="daily",
                url="u",
                now_ms=clock.now_ms(),
                skew_ms=5000,
            )
        assert store.coin(ecoin).index == 20
    finally:
        store.close()


def _check_disjoint(ranges: list[tuple[str, int, int]], total: int) -> None:
    spans = sorted((p, j) for _, p, j in ranges)
    covered = 0
    for p, j in spans:
        assert p == covered, f"overlap or hole at {p} (covered to {covered})"
        covered = j
    assert covered == total


def test_allocation_never_overlaps_across_threads(
    tmp_path: Path, add_coin: Any, clock: FakeClock
) -> None:
    wallet_dir = tmp_path / "w"
    setup = StoreShortcuts.open(wallet_dir)
    ecoin = add_coin(setup, n=1000)
    setup.close()
    per_thread, threads = 40, 4
    results: list[tuple[str, int, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        store = StoreShortcuts.open(wallet_dir)  # each thread its own engine, like its own command
        try:
            start.wait()
            for _ in range(per_thread):
                a = store.allocate(
                    amount_minor=3,
                    currency="EUR",
                    realm="daily",
                    url="u",
                    now_ms=clock.now_ms(),
                    skew_ms=0,
                )
                with lock:
                    results.append((a.coin.ecoin_id, a.prev, a.index))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not errors, errors
    assert len(results) == per_thread * threads
    assert {r[0] for r in results} == {ecoin}
    _check_disjoint(results, 3 * per_thread * threads)


_ALLOCATOR = """
import json, sys
from pathlib import Path
from tests.fakes.wallet_store import StoreShortcuts

store = StoreShortcuts.open(Path(sys.argv[1]))
sys.stdin.readline()  # start together
out = []
for _ in range(int(sys.argv[2])):
    a = store.allocate(amount_minor=2, currency="EUR", realm="daily", url="u",
                       now_ms=int(sys.argv[3]), skew_ms=0)
    out.append([a.coin.ecoin_id, a.prev, a.index])
store.close()
print(json.dumps(out))
"""


def test_allocation_never_overlaps_across_processes(
    tmp_path: Path, add_coin: Any, clock: FakeClock
) -> None:
    wallet_dir = tmp_path / "w"
    setup = StoreShortcuts.open(wallet_dir)
    ecoin = add_coin(setup, n=1000)
    setup.close()
    count = 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ALLOCATOR, str(wallet_dir), str(count), str(clock.now_ms())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for p in procs:  # both are waiting on stdin: release them together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outputs.append(json.loads(out))
    results = [tuple(r) for out in outputs for r in out]
    assert len(results) == 2 * count
    assert {r[0] for r in results} == {ecoin}
    _check_disjoint(results, 2 * 2 * count)  # type: ignore[arg-type]


def test_resync_only_moves_up_and_settles_headers(
    tmp_path: Path, add_coin: Any, clock: FakeClock
) -> None:
    store = StoreShortcuts.open(tmp_path / "w")
    ecoin = add_coin(store, n=100)
    try:
        store.allocate(
            amount_minor=5, currency="EUR", realm="d", url="u", now_ms=clock.now_ms(), skew_ms=0
        )
        assert store.resync(ecoin, 3) is False  # below the own index: nothing moves
        assert store.coin(ecoin).index == 5
        assert store.outstanding_words(ecoin) == 5
        assert store.resync(ecoin, 40) is True
        assert store.coin(ecoin).index == 40
        assert store.outstanding_words(ecoin) == 0
    finally:
        store.close()


def test_coin_states_go_through_one_transition_function(tmp_path: Path, add_coin: Any) -> None:
    store = StoreShortcuts.open(tmp_path / "w")
    try:
        ecoin = add_coin(store)
        assert store.coin(ecoin).state is CoinState.ACTIVE
        with pytest.raises(PreconditionFailed):
            store.change_state(ecoin, CoinEvent.REFUSED)  # an active coin is not refused
        with pytest.raises(PreconditionFailed):
            store.change_state(ecoin, CoinEvent.SOLD, touchstone=b"x", expires_at_ms=1)
        assert store.coin(ecoin).state is CoinState.ACTIVE
    finally:
        store.close()


def test_expired_and_foreign_coins_are_not_chosen(
    tmp_path: Path, add_coin: Any, clock: FakeClock
) -> None:
    store = StoreShortcuts.open(tmp_path / "w")
    try:
        add_coin(store, n=100, expires_in_ms=3000)  # within the skew of its expiry
        add_coin(store, n=100, currency="USD")
        add_coin(store, n=100, unit_value_minor=2)  # 2 does not divide 15
        with pytest.raises(Insufficient):
            store.allocate(
                amount_minor=15,
                currency="EUR",
                realm="d",
                url="u",
                now_ms=clock.now_ms(),
                skew_ms=5000,
            )
        good = add_coin(store, n=100, unit_value_minor=5)
        a = store.allocate(
            amount_minor=15, currency="EUR", realm="d", url="u", now_ms=clock.now_ms(), skew_ms=5000
        )
        assert (a.coin.ecoin_id, a.prev, a.index) == (good, 0, 3)
        word = store.word(good, 3)
        assert hash_down(bytes.fromhex(good), 3, word, 0) == store.word(good, 0)
    finally:
        store.close()
