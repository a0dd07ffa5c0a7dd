"""Per-click latency: a reader paying per click vs a reader of the free article.

Driven by `bench/run_bench.py`, which starts a broker and a vendor (gunicorn,
2 workers), buys one coin per paying user, makes every chain before the run
and pays each coin's first click (the acquisition) before locust starts, so
the run measures steady-state clicks. The coins file is named by
NETPAY_BENCH_COINS. Both user classes run in the same locust run, so the
paid/free ratio is measured under the same load.

Each paying user owns one coin and pays synchronously through the
`Authorization: NetPay` header: one request per click, no broker call unless
the vendor must checkpoint.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from locust import HttpUser, constant, task

from netpay.chain import Chain
from netpay.header import Credentials, format_authorization


class _Coins:
    """Hands each paying user its own pre-built coin (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spec: dict[str, Any] | None = None
        self._next = 0

    def spec(self) -> dict[str, Any]:
        with self._lock:
            if self._spec is None:
                self._spec = json.loads(Path(os.environ["NETPAY_BENCH_COINS"]).read_text())
            return self._spec

    def take(self) -> dict[str, Any]:
        spec = self.spec()
        with self._lock:
            if self._next >= len(spec["coins"]):
                raise RuntimeError("more paying users than pre-bought coins")
            coin: dict[str, Any] = spec["coins"][self._next]
            self._next += 1
            return coin


COINS = _Coins()


class PayingReader(HttpUser):
    """Pays each click with the next payword of its own coin."""

    wait_time = constant(0)

    def on_start(self) -> None:
        spec = COINS.spec()
        coin = COINS.take()
        ecoin = bytes.fromhex(coin["ecoin_id"])
        self.ecoin_id: str = coin["ecoin_id"]
        self.chain = Chain.make(ecoin, coin["n"], bytes.fromhex(coin["seed"]), pebble_every=16)
        self.index: int = coin["index"]
        self.words: int = spec["paid_words"]
        self.path: str = spec["paid_path"]

    @task
    def paid_click(self) -> None:
        if self.index + self.words > self.chain.n:
            self.stop()
            return
        prev, self.index = self.index, self.index + self.words
        header = format_authorization(
            Credentials(self.ecoin_id, prev, self.index, self.chain.word(self.index))
        )
        with self.client.get(
            self.path,
            headers={"Authorization": header, "Accept": "application/json"},
            name="paid article",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200 or "NetPay-Receipt" not in resp.headers:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")


class FreeReader(HttpUser):
    """Reads the free article: the same template, no payment (the floor)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.path: str = COINS.spec()["free_path"]

    @task
    def free_click(self) -> None:
        with self.client.get(self.path, name="free article", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
