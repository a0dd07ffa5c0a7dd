"""Serial paid click vs free article, in one process (no load, no locust).

    .venv/bin/python bench/serial_click.py --clicks 300 --repeat 3

Starts a broker and a vendor in process (the web tier on werkzeug, one
client), buys a coin, then times N free pages and N paid clicks over real
HTTP on loopback, `--repeat` times, and prints the medians and their ratio.
It isolates the server-side cost of a paid click from queueing under load.
Besides wall time it reports the process's CPU time per request (client and
servers together), which varies less on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import requests

from broker.server import BrokerConfig, add_vendor, start_broker
from netpay.chain import Chain
from netpay.header import Credentials, format_authorization
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from vendor.server import VendorConfig, start_vendor


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netpay-serial-") as tmp:
        d = Path(tmp)
        broker = start_broker(BrokerConfig(data_dir=d / "b", demo_deposit_minor=10**7))
        vendor = start_vendor(
            VendorConfig(
                data_dir=d / "v",
                broker_addr=broker.grpc_address,
                enroll_token=add_vendor(d / "b", "serial-news"),
                workers=0,
                background=False,
            )
        )
        try:
            with grpc.insecure_channel(broker.grpc_address) as channel:
                stub = broker_pb2_grpc.BrokerStub(channel)
                stub.RegisterReader(
                    broker_pb2.RegisterReaderRequest(username="serial", password="serial-password")
                )
                token = stub.Login(
                    broker_pb2.LoginRequest(username="serial", password="serial-password")
                ).token
                ecoin = secrets.token_bytes(16)
                n = (args.clicks + 1) * args.repeat + 1
                chain = Chain.make(ecoin, n, secrets.token_bytes(32))
                stub.BuyCoin(
                    broker_pb2.BuyCoinRequest(
                        request_id="serial",
                        ecoin_id=ecoin.hex(),
                        root=chain.root,
                        n=n,
                        unit_value_minor=1,
                        currency="EUR",
                        wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
                    ),
                    metadata=bearer_metadata(token),
                )
            http = requests.Session()
            index = 0

            def paid() -> None:
                nonlocal index
                header = format_authorization(
                    Credentials(ecoin.hex(), index, index + 1, chain.word(index + 1))
                )
                index += 1
                resp = http.get(
                    f"{vendor.web_url}/articles/1", headers={"Authorization": header}, timeout=30
                )
                assert resp.status_code == 200, resp.text

            def free() -> None:
                assert http.get(f"{vendor.web_url}/articles/free", timeout=30).status_code == 200

            paid()  # the acquisition, not measured
            runs = []
            for _ in range(args.repeat):
                row = {}
                for name, fn in (("free", free), ("paid", paid)):
                    start, cpu_start = time.perf_counter(), time.process_time()
                    for _ in range(args.clicks):
                        fn()
                    row[f"{name}_ms"] = (time.perf_counter() - start) / args.clicks * 1000
                    # CPU of the whole process (client and servers): steadier than
                    # wall time on a shared machine, and the client's part is the
                    # same for both pages.
                    row[f"{name}_cpu_ms"] = (time.process_time() - cpu_start) / args.clicks * 1000
                row["ratio"] = row["paid_ms"] / row["free_ms"]
                row["cpu_ratio"] = row["paid_cpu_ms"] / row["free_cpu_ms"]
                runs.append(row)
                print(json.dumps(row), flush=True)
            print(json.dumps({k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}))
        finally:
            vendor.stop()
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
