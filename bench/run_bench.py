"""Run the per-click benchmark: paid click vs free article, several runs.

    .venv/bin/python bench/run_bench.py --runs 3 --users 20 --run-time 30

Starts a broker and one vendor (gunicorn, `--workers 2`) on loopback in a
temporary directory, registers a bench reader, buys one coin per paying user
(the chains are made here, before the run), pays each coin's first click
(the acquisition) so the runs measure steady-state clicks, then runs locust
headless with both user classes at once. Every run reports p50 / p99 and
requests/s of both endpoints and the paid/free p50 ratio of that run; the
summary is the median over runs. Results are written to bench/results/.

Needs the `bench` extra: `.venv/bin/pip install -e '.[dev,bench]'`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import grpc
import requests

from netpay.chain import Chain
from netpay.header import Credentials, format_authorization
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def netpay(*args: str) -> list[str]:
    return [sys.executable, "-m", "netpay.cli.main", *args]


def start(argv: list[str]) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"{argv[3:5]} exited with {proc.wait()} before it was ready")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def buy_coins(broker: str, count: int, units: int) -> list[dict[str, Any]]:
    channel = grpc.insecure_channel(broker)
    stub = broker_pb2_grpc.BrokerStub(channel)
    user = f"bench{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    stub.RegisterReader(broker_pb2.RegisterReaderRequest(username=user, password=password))
    token = stub.Login(broker_pb2.LoginRequest(username=user, password=password)).token
    coins = []
    for _ in range(count):
        ecoin = secrets.token_bytes(16)
        seed = secrets.token_bytes(32)
        chain = Chain.make(ecoin, units, seed, pebble_every=units)
        stub.BuyCoin(
            broker_pb2.BuyCoinRequest(
                request_id=str(uuid.uuid4()),
                ecoin_id=ecoin.hex(),
                root=chain.root,
                n=units,
                unit_value_minor=1,
                currency="EUR",
                wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
            ),
            metadata=bearer_metadata(token),
        )
        coins.append({"ecoin_id": ecoin.hex(), "seed": seed.hex(), "n": units, "index": 0})
    channel.close()
    return coins


def first_clicks(web: str, coins: list[dict[str, Any]], path: str, words: int) -> None:
    """Pay one click per coin so every coin is acquired before the run."""
    with requests.Session() as http:
        for coin in coins:
            chain = Chain.make(
                bytes.fromhex(coin["ecoin_id"]),
                coin["n"],
                bytes.fromhex(coin["seed"]),
                pebble_every=64,
            )
            j = coin["index"] + words
            header = format_authorization(
                Credentials(coin["ecoin_id"], coin["index"], j, chain.word(j))
            )
            resp = http.get(web + path, headers={"Authorization": header}, timeout=30)
            if resp.status_code != 200:
                raise SystemExit(f"warm-up click failed: {resp.status_code} {resp.text[:200]}")
            coin["index"] = j


def read_stats(prefix: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] in ("paid article", "free article"):
                out[row["Name"]] = {
                    "requests": float(row["Request Count"]),
                    "failures": float(row["Failure Count"]),
                    "p50_ms": float(row["50%"]),
                    "p99_ms": float(row["99%"]),
                    "rps": float(row["Requests/s"]),
                }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=20, help="total users, half of them paying")
    parser.add_argument("--run-time", type=int, default=30, help="seconds per run")
    parser.add_argument("--workers", type=int, default=2, help="vendor gunicorn workers")
    parser.add_argument("--label", default="walking-skeleton")
    args = parser.parse_args()
    paying = args.users // 2

    with tempfile.TemporaryDirectory(prefix="netpay-bench-") as tmp:
        d = Path(tmp)
        broker, b_ready = start(
            netpay(
                "broker",
                "serve",
                "--data-dir",
                str(d / "broker"),
                "--grpc-addr",
                "127.0.0.1:0",
                "--demo-deposit-minor",
                "100000000",
            )
        )
        procs = [broker]
        try:
            token = subprocess.run(
                netpay("broker", "add-vendor", "bench-news", "--data-dir", str(d / "broker")),
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            vendor, v_ready = start(
                netpay(
                    "vendor",
                    "serve",
                    "--data-dir",
                    str(d / "vendor"),
                    "--broker",
                    b_ready["grpc"],
                    f"--enroll={token}",
                    "--workers",
                    str(args.workers),
                    "--name",
                    "Bench News",
                )
            )
            procs.append(vendor)
            web = v_ready["web"]
            articles = requests.get(web + "/api/articles", timeout=10).json()
            paid = min((a for a in articles if a["amount"] > 0), key=lambda a: a["amount"])
            free = next(a for a in articles if a["amount"] == 0)
            paid_path = "/" + paid["url"].split("/", 3)[3]
            free_path = "/" + free["url"].split("/", 3)[3]
            runs = []
            for run in range(args.runs):
                coins = buy_coins(b_ready["grpc"], paying, units=100_000)
                first_clicks(web, coins, paid_path, paid["amount"])
                spec = {
                    "coins": coins,
                    "paid_path": paid_path,
                    "paid_words": paid["amount"],
                    "free_path": free_path,
                }
                coins_file = d / f"coins-{run}.json"
                coins_file.write_text(json.dumps(spec))
                prefix = d / f"run-{run}"
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "locust",
                        "-f",
                        str(ROOT / "bench" / "locustfile.py"),
                        "--headless",
                        "--users",
                        str(args.users),
                        "--spawn-rate",
                        str(args.users),
                        "--run-time",
                        f"{args.run_time}s",
                        "--host",
                        web,
                        "--csv",
                        str(prefix),
                        "--only-summary",
                        "--loglevel",
                        "WARNING",
                    ],
                    check=False,
                    env={**os.environ, "NETPAY_BENCH_COINS": str(coins_file)},
                )
                stats = read_stats(prefix)
                stats["ratio_paid_free_p50"] = {
                    "value": stats["paid article"]["p50_ms"]
                    / max(stats["free article"]["p50_ms"], 1e-9)
                }
                runs.append(stats)
                print(json.dumps({"run": run, **stats}), flush=True)
        finally:
            for p in reversed(procs):
                stop(p)

    def med(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in runs)

    summary = {
        "label": args.label,
        "date": dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {
            "runs": args.runs,
            "users": args.users,
            "run_time_s": args.run_time,
            "workers": args.workers,
            "paid_amount_minor": paid["amount"],
        },
        "median": {
            name: {k: med(name, k) for k in ("p50_ms", "p99_ms", "rps", "failures")}
            for name in ("paid article", "free article")
        },
        "median_ratio_paid_free_p50": statistics.median(
            r["ratio_paid_free_p50"]["value"] for r in runs
        ),
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{summary['date']}-{args.label}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("median", "median_ratio_paid_free_p50")}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
