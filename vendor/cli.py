"""`netpay vendor ...`: run a newspaper (a NetPay vendor)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from netpay.ready import install_stop_handlers, print_ready
from vendor.redemption import DEFAULT_REDEEM_AT
from vendor.server import VendorConfig, redeem_now, start_vendor

__all__ = ["add_commands"]

log = logging.getLogger(__name__)

VENDOR_EPILOG = """examples:
  netpay vendor serve --data-dir /tmp/v1 --broker 127.0.0.1:7000 --enroll TOKEN
  netpay vendor serve --data-dir /tmp/v1 --name "The Chain Gazette" --workers 4
  netpay vendor redeem --data-dir /tmp/v1 --json
"""

REDEEM_EPILOG = """examples:
  netpay vendor redeem --data-dir /tmp/v1
  netpay vendor redeem --data-dir /tmp/v1 --json
  # {"accepted": 3, "batches": [...], "paid_minor": {"EUR": 42}, "pending": 0, "rejected": 0}
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


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "vendor",
        help="run a NetPay vendor (a demo newspaper)",
        description="A NetPay vendor: a newspaper site paid by the word, plus its gRPC service.",
        epilog=VENDOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="vendor_command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the newspaper web site and the vendor gRPC service",
        description="Register with the broker, then serve gRPC and the web site.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--data-dir", required=True, type=Path, help="the vendor's data directory")
    serve.add_argument("--broker", metavar="H:P", help="broker gRPC address (first start)")
    serve.add_argument("--enroll", metavar="TOKEN", help="one-time enrollment token (first start)")
    serve.add_argument(
        "--grpc-addr",
        default="127.0.0.1:0",
        metavar="H:P",
        help="gRPC listen address (port 0: any)",
    )
    serve.add_argument(
        "--web-addr", default="127.0.0.1:0", metavar="H:P", help="web listen address (port 0: any)"
    )
    serve.add_argument(
        "--db-url",
        metavar="URL",
        help="database URL (default: SQLite in the data dir; env NETPAY_DB_URL)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext listeners on non-loopback addresses",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="gunicorn web workers (0: in-process server)",
    )
    serve.add_argument(
        "--name",
        metavar="NAME",
        help='newspaper: "The Daily Hash", "The Chain Gazette" or a new name',
    )
    serve.add_argument(
        "--articles",
        type=Path,
        metavar="FILE",
        help="articles JSON file (default: the packaged demo set)",
    )
    serve.add_argument(
        "--dashboard-password-file",
        type=Path,
        metavar="FILE",
        help="set the /dashboard operator password (first line of FILE); kept for later starts",
    )
    serve.add_argument(
        "--redeem-at",
        default=DEFAULT_REDEEM_AT,
        metavar="HH:MM",
        help=f"daily redemption time, UTC (default {DEFAULT_REDEEM_AT}); 'off' to redeem "
        "only with `netpay vendor redeem`",
    )
    serve.set_defaults(func=_serve)

    redeem = commands.add_parser(
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    redeem.add_argument("--data-dir", required=True, type=Path, help="the vendor's data directory")
    redeem.add_argument("--db-url", metavar="URL", help="database URL (default: the data dir's)")
    redeem.add_argument("--json", action="store_true", help="print the report as one JSON line")
    redeem.set_defaults(func=_redeem)


def _redeem(args: argparse.Namespace) -> int:
    report = redeem_now(args.data_dir, args.db_url)
    summary = report.as_json()
    if args.json:
        print(json.dumps(summary, sort_keys=True), flush=True)
    else:
        paid = ", ".join(f"{a / 100:.2f} {c}" for c, a in sorted(summary["paid_minor"].items()))
        print(
            f"{summary['accepted']} claims accepted, {summary['rejected']} rejected; "
            f"paid {paid or 'nothing'}; {summary['pending']} batch(es) pending",
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
