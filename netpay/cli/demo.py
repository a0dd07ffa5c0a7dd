"""`netpay demo`: a broker, two newspapers and a funded demo reader on loopback.

Every server is a child process started through the same `netpay ... serve`
commands an operator uses; the launcher reads each child's ready line (no
sleeping), enrolls the vendors and the demo reader on first run, and stops
every child on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ewallet_client.wallet import Wallet
from netpay.errors import NetPayError, Unavailable
from netpay.files import ensure_private_dir, write_private
from netpay.ready import child_env

__all__ = [
    "DEMO_VENDORS",
    "Child",
    "add_commands",
]

# (vendor id, newspaper name)
DEMO_VENDORS: tuple[tuple[str, str], ...] = (
    ("daily-hash", "The Daily Hash"),
    ("chain-gazette", "The Chain Gazette"),
)
DEMO_USERNAME = "demo"
DEMO_COIN_UNITS = 1_000
# The broker's web portal comes after the vendors' ports: N + 2 * len(vendors) + 1.
BROKER_WEB_OFFSET = 2 * len(DEMO_VENDORS) + 1
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0

EPILOG = """examples:
  netpay demo                      # free ports, temporary state, Ctrl-C stops it
  netpay demo --json               # first stdout line: the addresses, as JSON
  netpay demo --data-dir ~/netpay-demo --port-base 7700
then, in another terminal (the wallet dir is printed at start):
  netpay wallet --wallet-dir DIR read http://127.0.0.1:PORT/articles/1
"""


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a broker, two newspapers and a funded demo reader",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, help="keep state here and reuse it on the next run")
    p.add_argument(
        "--port-base",
        type=int,
        help="fixed ports: broker gRPC N; vendor k gRPC N+2k+1, web N+2k+2; broker web "
        f"portal N+{2 * len(DEMO_VENDORS) + 1} (default: free ports)",
    )
    p.add_argument("--json", action="store_true", help="print the addresses as one JSON line")
    p.set_defaults(func=_cmd_demo)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any] = field(default_factory=dict)


def _netpay(*args: str) -> list[str]:
    return [sys.executable, "-m", "netpay.cli.main", *args]


def _start(name: str, argv: list[str]) -> Child:
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,  # children log to our stderr
        start_new_session=True,  # we stop them ourselves, in order
        env=child_env(),  # ...and they stop if we are killed
    )
    return Child(name, proc)


def _await_ready(child: Child, deadline: float) -> dict[str, Any]:
    """Read the child's one JSON ready line, or fail if it exits or times out."""
    out = child.proc.stdout
    assert out is not None
    with selectors.DefaultSelector() as sel:
        sel.register(out, selectors.EVENT_READ)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not sel.select(timeout=remaining):
            raise Unavailable(f"{child.name} was not ready within {READY_TIMEOUT_S:.0f} s")
    line = out.readline()
    if not line:
        raise Unavailable(f"{child.name} exited with {child.proc.wait()} before it was ready")
    ready: dict[str, Any] = json.loads(line)
    child.ready = ready
    threading.Thread(target=_drain, args=(out,), daemon=True).start()
    return ready


def _drain(stream: IO[bytes]) -> None:
    for _ in iter(stream.readline, b""):
        pass


def _stop(children: list[Child]) -> None:
    for child in reversed(children):  # vendors first, the broker last
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
        try:
            child.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def _addr(port_base: int | None, offset: int) -> str:
    return f"127.0.0.1:{0 if port_base is None else port_base + offset}"


def _cmd_demo(args: argparse.Namespace) -> int:
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="netpay-demo-")) if temporary else args.data_dir
    ensure_private_dir(data_dir)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    children: list[Child] = []
    try:
        info = _launch(data_dir, args.port_base, children)
        if args.json:
            sys.stdout.write(json.dumps(info) + "\n")
            sys.stdout.flush()
        _print_guide(info)
        while not stop.wait(timeout=1.0):
            dead = [c for c in children if c.proc.poll() is not None]
            if dead:
                print(f"netpay demo: {dead[0].name} exited; stopping", file=sys.stderr)
                return 1
        return 0
    except NetPayError as err:
        print(f"netpay demo: {err.code}: {err.detail}", file=sys.stderr)
        return 1
    finally:
        _stop(children)
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


def _launch(data_dir: Path, port_base: int | None, children: list[Child]) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    broker_dir = data_dir / "broker"
    broker = _start(
        "broker",
        _netpay(
            "broker",
            "serve",
            "--data-dir",
            str(broker_dir),
            "--grpc-addr",
            _addr(port_base, 0),
            "--web-addr",
            _addr(port_base, BROKER_WEB_OFFSET),
        ),
    )
    children.append(broker)
    broker_ready = _await_ready(broker, deadline)
    broker_addr = broker_ready["grpc"]
    vendors = [
        _launch_vendor(data_dir, broker_addr, k, vendor_id, name, port_base, children, deadline)
        for k, (vendor_id, name) in enumerate(DEMO_VENDORS)
    ]
    wallet_dir = data_dir / "wallet"
    _ensure_demo_reader(data_dir, wallet_dir, broker_addr)
    return {
        "broker": {
            "grpc": broker_addr,
            "web": broker_ready.get("web"),
            "data_dir": str(broker_dir),
        },
        "vendors": vendors,
        "wallet_dir": str(wallet_dir),
    }


def _launch_vendor(
    data_dir: Path,
    broker_addr: str,
    k: int,
    vendor_id: str,
    name: str,
    port_base: int | None,
    children: list[Child],
    deadline: float,
) -> dict[str, Any]:
    """Start demo newspaper ``k`` (enrolled at the broker on its first run)."""
    vendor_dir = data_dir / vendor_id
    argv = _netpay(
        "vendor",
        "serve",
        "--data-dir",
        str(vendor_dir),
        "--broker",
        broker_addr,
        "--name",
        name,
        "--grpc-addr",
        _addr(port_base, 2 * k + 1),
        "--web-addr",
        _addr(port_base, 2 * k + 2),
    )
    if not (vendor_dir / "vendor.json").exists():
        token = subprocess.run(
            _netpay("broker", "add-vendor", vendor_id, "--data-dir", str(data_dir / "broker")),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        argv.append(f"--enroll={token}")  # a token may start with "-"
    child = _start(vendor_id, argv)
    children.append(child)
    ready = _await_ready(child, deadline)
    return {
        "vendor_id": vendor_id,
        "name": name,
        "grpc": ready["grpc"],
        "web": ready["web"],
        "data_dir": str(vendor_dir),
    }


def _ensure_demo_reader(data_dir: Path, wallet_dir: Path, broker_addr: str) -> None:
    """First run: register the demo reader, log the wallet in, buy one coin."""
    password_file = data_dir / "demo-reader-password"
    with Wallet(wallet_dir) as wallet:
        if password_file.exists():
            password = password_file.read_text().strip()
            wallet.login(broker_addr, DEMO_USERNAME, password)  # the broker may have moved
            return
        password = secrets.token_urlsafe(18)
        wallet.register(broker_addr, DEMO_USERNAME, password)
        write_private(password_file, (password + "\n").encode())
        wallet.buy(DEMO_COIN_UNITS)


def _print_guide(info: dict[str, Any]) -> None:
    lines = [
        "NetPay demo is running (Ctrl-C stops it):",
        f"  broker gRPC  {info['broker']['grpc']}",
        f"  broker web   {info['broker']['web']}   (register, coins, newspapers)",
    ]
    for v in info["vendors"]:
        lines.append(f"  {v['name']:<18} {v['web']}   (gRPC {v['grpc']})")
    first = info["vendors"][0]["web"]
    lines += [
        f"  wallet       {info['wallet_dir']}",
        "try:",
        f"  netpay wallet --wallet-dir {info['wallet_dir']} read {first}/articles/1",
        f"  netpay wallet --wallet-dir {info['wallet_dir']} balance",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
