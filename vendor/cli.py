"""`netpay vendor ...`: run a newspaper (a NetPay vendor).

Each command is a small handler function, registered in :data:`_COMMANDS`
with its help, description, examples (the epilog) and arguments;
:func:`add_commands` builds the argparse tree from that table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from netpay.commands import Command, add_command, arg
from netpay.ready import install_stop_handlers, print_ready
from vendor.offline import history_now, redeem_now, refund_now
from vendor.server import VendorConfig, start_vendor
from vendor.services.redeem import DEFAULT_REDEEM_AT
from vendor.services.refunds import MAX_REFUND_REASON_CHARS
from vendor.services.reports import MAX_HISTORY_ROWS, write_history_csv

__all__ = ["add_commands"]

log = logging.getLogger(__name__)

VENDOR_EPILOG = """examples:
  netpay vendor serve --data-dir /tmp/v1 --broker 127.0.0.1:7000 --enroll TOKEN
  netpay vendor serve --data-dir /tmp/v1 --name "The Chain Gazette" --workers 4
  netpay vendor redeem --data-dir /tmp/v1 --json
  netpay vendor refund --data-dir /tmp/v1 --ecoin ECOIN --receipt-to 15 --amount-minor 10 \\
      --reason "article withdrawn"
  netpay vendor history --data-dir /tmp/v1 --json --limit 20
"""

REDEEM_EPILOG = """examples:
  netpay vendor redeem --data-dir /tmp/v1
  netpay vendor redeem --data-dir /tmp/v1 --json
  # {"accepted": 3, "batches": [...], "paid_minor": {"EUR": 42}, "pending": 0,
  #  "refunds": {"accepted": 1, "rejected": 0}, "refunded_minor": {"EUR": 5}, ...}
"""

REFUND_EPILOG = """examples:
  # give back the 10 cents of the click whose receipt ends at index 15
  netpay vendor refund --data-dir /tmp/v1 --ecoin 000102030405060708090a0b0c0d0e0f \\
      --receipt-to 15 --amount-minor 10 --reason "article withdrawn" --json
  # {"refund_id": "3f0c...", "status": "pending", "amount_minor": 10, "currency": "EUR", ...}

  # an id of your own makes a retry safe: the same id again records nothing new
  netpay vendor refund --data-dir /tmp/v1 --ecoin 000102030405060708090a0b0c0d0e0f \\
      --receipt-to 15 --amount-minor 10 --reason "article withdrawn" --refund-id order-42
"""

HISTORY_EPILOG = """examples:
  netpay vendor history --data-dir /tmp/v1
  netpay vendor history --data-dir /tmp/v1 --json --limit 20
  # {"kind": "batch", "batch_id": "...", "status": "done", "claims": 2, "refunds": 1, ...}
  # {"kind": "claim", "status": "accepted", "amount_minor": 15, "currency": "EUR", ...}
  # {"kind": "refund", "status": "accepted", "amount_minor": -10, "refund_id": "...", ...}
  netpay vendor history --data-dir /tmp/v1 --csv /tmp/v1-history.csv
"""

SERVE_EPILOG = """examples:
  # first start: enroll with the token from `netpay broker add-vendor daily-hash`
  netpay vendor serve --data-dir /tmp/v1 --broker 127.0.0.1:7000 --enroll TOKEN

  # later starts remember the broker, the vendor id and the token
  netpay vendor serve --data-dir /tmp/v1 --web-addr 127.0.0.1:8001

  # set the operator password of http://127.0.0.1:8001/dashboard (kept afterwards)
  netpay vendor serve --data-dir /tmp/v1 --dashboard-password-file ~/.vendor-password

Once every listener is bound and answering, prints one JSON line:
  {"grpc": "127.0.0.1:40123", "web": "http://127.0.0.1:8001"}
SIGINT or SIGTERM stops the vendor (exit code 0).
"""


def _refund(args: argparse.Namespace) -> int:
    record = refund_now(
        args.data_dir,
        args.db_url,
        ecoin_id=args.ecoin,
        receipt_to_index=args.receipt_to,
        amount_minor=args.amount_minor,
        reason=args.reason,
        refund_id=args.refund_id,
    )
    if args.json:
        print(json.dumps(record.as_json(), sort_keys=True), flush=True)
    else:
        verb = "recorded" if record.created else "already recorded"
        print(
            f"refund {record.refund_id} {verb}: {record.amount_minor / 100:.2f} "
            f"{record.currency} for item {record.item_id} ({record.status})",
            file=sys.stderr,
        )
    return 0


def _history(args: argparse.Namespace) -> int:
    rows = history_now(args.data_dir, args.db_url, limit=args.limit)
    if args.csv is not None:
        with Path(args.csv).open("w", newline="", encoding="utf-8") as out:
            write_history_csv(rows, out)
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps(row, sort_keys=True) + "\n")
        sys.stdout.flush()
    else:
        for row in rows:
            sys.stdout.write(_history_line(row) + "\n")
    return 0


def _history_line(row: dict[str, object]) -> str:
    when = str(row["time"])
    if row["kind"] == "batch":
        return (
            f"{when}  batch  {row['batch_id']}  {row['status']}  "
            f"{row['claims']} claim(s), {row['refunds']} refund(s)"
        )
    amount = row["amount_minor"]
    money = f"{int(amount) / 100:+.2f} {row['currency']}" if isinstance(amount, int) else ""
    why = f"  {row['reason']}: {row['detail']}" if row["reason"] else ""
    if row["kind"] == "claim":
        return (
            f"{when}  claim  {row['ecoin_id']} epoch {row['epoch']} "
            f"({row['from_index']}, {row['to_index']}]  {row['status']}  {money}{why}"
        )
    return (
        f"{when}  refund {row['refund_id']}  {row['ecoin_id']} receipt {row['to_index']}  "
        f"{row['status']}  {money}  {row['refund_reason']}{why}"
    )


def _redeem(args: argparse.Namespace) -> int:
    report = redeem_now(args.data_dir, args.db_url)
    summary = report.as_json()
    if args.json:
        print(json.dumps(summary, sort_keys=True), flush=True)
    else:
        paid = ", ".join(f"{a / 100:.2f} {c}" for c, a in sorted(summary["paid_minor"].items()))
        refunds = summary["refunds"]
        print(
            f"{summary['accepted']} claims accepted, {summary['rejected']} rejected; "
            f"paid {paid or 'nothing'}; {summary['pending']} batch(es) pending; "
            f"refunds: {refunds['accepted']} accepted, {refunds['rejected']} rejected, "
            f"{summary['refunds_waiting']} waiting",
            file=sys.stderr,
        )
    return 3 if report.pending else 0


def _serve(args: argparse.Namespace) -> int:
    config = VendorConfig(
        data_dir=args.data_dir,
        broker_addr=args.broker,
        enroll_token=args.enroll,
        grpc_addr=args.grpc_addr,
        web_addr=args.web_addr,
        db_url=args.db_url,
        insecure=args.insecure,
        workers=args.workers,
        display_name=args.name,
        articles_file=args.articles,
        dashboard_password_file=args.dashboard_password_file,
        redeem_at=None if args.redeem_at == "off" else args.redeem_at,
    )
    stop = install_stop_handlers()  # before the ready line: a signal right after it stops cleanly
    handle = start_vendor(config)
    try:
        print_ready(handle.grpc_address, handle.web_url)
        stop.wait()
    finally:
        handle.stop()
    return 0


# -- the command table ------------------------------------------------------------------


_DATA_DIR = arg("--data-dir", required=True, type=Path, help="the vendor's data directory")
_DB_URL = arg("--db-url", metavar="URL", help="database URL (default: the data dir's)")

_SERVE_ARGS = (
    _DATA_DIR,
    arg("--broker", metavar="H:P", help="broker gRPC address (first start)"),
    arg("--enroll", metavar="TOKEN", help="one-time enrollment token (first start)"),
    arg(
        "--grpc-addr",
        default="127.0.0.1:0",
        metavar="H:P",
        help="gRPC listen address (port 0: any)",
    ),
    arg(
        "--web-addr", default="127.0.0.1:0", metavar="H:P", help="web listen address (port 0: any)"
    ),
    arg(
        "--db-url",
        metavar="URL",
        help="database URL (default: SQLite in the data dir; env NETPAY_DB_URL)",
    ),
    arg(
        "--insecure",
        action="store_true",
        help="allow plaintext listeners on non-loopback addresses",
    ),
    arg(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="gunicorn web workers (0: in-process server)",
    ),
    arg(
        "--name",
        metavar="NAME",
        help='newspaper: "The Daily Hash", "The Chain Gazette" or a new name',
    ),
    arg(
        "--articles",
        type=Path,
        metavar="FILE",
        help="articles JSON file (default: the packaged demo set)",
    ),
    arg(
        "--dashboard-password-file",
        type=Path,
        metavar="FILE",
        help="set the /dashboard operator password (first line of FILE); kept for later starts",
    ),
    arg(
        "--redeem-at",
        default=DEFAULT_REDEEM_AT,
        metavar="HH:MM",
        help=f"daily redemption time, UTC (default {DEFAULT_REDEEM_AT}); 'off' to redeem "
        "only with `netpay vendor redeem`",
    ),
)

_REDEEM_ARGS = (
    _DATA_DIR,
    _DB_URL,
    arg("--json", action="store_true", help="print the report as one JSON line"),
)

_REFUND_ARGS = (
    _DATA_DIR,
    _DB_URL,
    arg("--ecoin", required=True, metavar="ID", help="the coin (32 hex characters)"),
    arg(
        "--receipt-to",
        required=True,
        type=int,
        metavar="INDEX",
        help="the to-index of the click's receipt",
    ),
    arg(
        "--amount-minor",
        required=True,
        type=int,
        metavar="A",
        help="minor units to give back, in the click's currency",
    ),
    arg(
        "--reason",
        required=True,
        metavar="TEXT",
        help=f"why (1..{MAX_REFUND_REASON_CHARS} printable characters; signed into the refund)",
    ),
    arg(
        "--refund-id",
        metavar="ID",
        help="idempotency key, 1..64 of [A-Za-z0-9_-] (default: a random one)",
    ),
    arg("--json", action="store_true", help="print the refund as one JSON line"),
)

_HISTORY_ARGS = (
    _DATA_DIR,
    _DB_URL,
    arg("--json", action="store_true", help="print one JSON object per line"),
    arg(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help=f"at most N rows (1..{MAX_HISTORY_ROWS}, default 100)",
    ),
    arg("--csv", type=Path, metavar="FILE", help="also write the rows as CSV"),
)

_COMMANDS = (
    Command(
        "serve",
        help="serve the newspaper web site and the vendor gRPC service",
        description="Register with the broker, then serve gRPC and the web site.",
        epilog=SERVE_EPILOG,
        arguments=_SERVE_ARGS,
        handler=_serve,
    ),
    Command(
        "redeem",
        help="redeem the spent paywords with the broker now",
        description=(
            "Send the broker every claim that can be made now (clicks and closed windows "
            "above what was already claimed), after any batch left pending by an earlier "
            "run. A batch is stored before it is sent, so a crash or a lost reply never "
            "pays twice or loses a payment. Exit code 0, or 3 when the broker could not "
            "be reached (the batch stays pending for the next run)."
        ),
        epilog=REDEEM_EPILOG,
        arguments=_REDEEM_ARGS,
        handler=_redeem,
    ),
    Command(
        "refund",
        help="give a reader money back for a paid click (netted at the next redemption)",
        description=(
            "Record a refund for returned goods: AMOUNT of the paid click whose receipt "
            "ends at index --receipt-to of coin --ecoin goes back to the reader. The "
            "vendor signs a VendorRefund and keeps it pending; the next redemption batch "
            "that can carry it (once the click's claim is sent) nets it from the payout. "
            "At most what the click paid, less its earlier refunds. The same --refund-id "
            "again records nothing new. Needs no broker."
        ),
        epilog=REFUND_EPILOG,
        arguments=_REFUND_ARGS,
        handler=_refund,
    ),
    Command(
        "history",
        help="list redemption batches, claims and refunds",
        description=(
            "The vendor's redemption history, newest first: one row per batch (state, "
            "claims, refunds), per claim (status, units, amount paid, the broker's "
            "reason) and per refund (status, amount as a negative number, the receipt "
            "it refunds). Read from the data dir; needs no broker."
        ),
        epilog=HISTORY_EPILOG,
        arguments=_HISTORY_ARGS,
        handler=_history,
    ),
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "vendor",
        help="run a NetPay vendor (a demo newspaper)",
        description="A NetPay vendor: a newspaper site paid by the word, plus its gRPC service.",
        epilog=VENDOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="vendor_command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        add_command(commands, command)
