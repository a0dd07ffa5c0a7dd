"""`netpay broker ...`: serve the broker, admit vendors, reconcile the books."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from netpay.commands import Command, add_command, arg
from netpay.ready import install_stop_handlers, print_ready

if TYPE_CHECKING:
    from broker.services.reconcile import Reconciliation

__all__ = ["COMMANDS", "add_commands"]

DEFAULT_GRPC_ADDR = "127.0.0.1:7700"
DB_URL_ENV = "NETPAY_DB_URL"

_BROKER_EPILOG = """examples:
  netpay broker serve --data-dir /tmp/broker
  netpay broker add-vendor daily-planet --origin http://127.0.0.1:8001 --data-dir /tmp/broker
  netpay broker reconcile --data-dir /tmp/broker --day 2026-11-22 --json
"""

_SERVE_EPILOG = f"""Prints one JSON line on stdout once ready: {{"grpc": "H:P", "web": "http://H:P"}}
("web" is null without --web-addr), then serves until SIGINT or SIGTERM (exit
code 0). The data dir is made at the first start: broker.key (Ed25519, 0600),
broker.json (the broker id), broker.sqlite, and with the portal web-secret.key
(0600, the session cookie key). --db-url (or ${DB_URL_ENV}) puts the database
elsewhere, e.g. PostgreSQL.

The web portal (--web-addr) serves readers in a browser: register, log in,
profile, demo payment instruments, their coins, the newspapers. On a
non-loopback address it needs --insecure (plain HTTP: put a TLS proxy in
front) and its session cookie is Secure.

examples:
  netpay broker serve --data-dir /tmp/broker
  netpay broker serve --data-dir /tmp/broker --web-addr 127.0.0.1:7780
  netpay broker serve --data-dir /tmp/broker --grpc-addr 127.0.0.1:0 --currency EUR USD
"""

_ADD_VENDOR_EPILOG = """Prints the one-time enrollment token alone on stdout (or a JSON object with
--json). The vendor presents it at its first start (`netpay vendor serve --enroll TOKEN`).
Works while the broker runs. Asking again before the vendor enrolled replaces the token.

examples:
  netpay broker add-vendor daily-planet --origin http://127.0.0.1:8001 --data-dir /tmp/broker
  netpay broker add-vendor gazette --data-dir /tmp/broker --json
"""


_RECONCILE_EPILOG = """examples:
  netpay broker reconcile --data-dir /tmp/broker --day 2026-11-22 --json
  # {"balanced": true, "conservation_cents": {"EUR": 0}, "disputes": [], ...}
  netpay broker reconcile --data-dir /tmp/broker --day 2026-11-22 --csv /tmp/ledger.csv
"""


def _db_url(args: argparse.Namespace) -> str | None:
    url: str | None = args.db_url or os.environ.get(DB_URL_ENV) or None
    return url


def _serve(args: argparse.Namespace) -> int:
    from broker.server import BrokerConfig, start_broker

    currencies = tuple(dict.fromkeys(args.currency or ["EUR"]))
    config = BrokerConfig(
        data_dir=Path(args.data_dir),
        grpc_addr=args.grpc_addr,
        db_url=_db_url(args),
        insecure=args.insecure,
        broker_id=args.broker_id,
        currencies=currencies,
        demo_deposit_minor=args.demo_deposit_minor,
        web_addr=args.web_addr,
    )
    stop = install_stop_handlers()
    handle = start_broker(config)
    try:
        print_ready(handle.grpc_address, handle.web_url)
        stop.wait()
    finally:
        handle.stop()
    return 0


def _add_vendor(args: argparse.Namespace) -> int:
    from broker.server import add_vendor

    token = add_vendor(Path(args.data_dir), args.vendor_id, args.origin, db_url=_db_url(args))
    if args.json:
        sys.stdout.write(
            json.dumps({"vendor_id": args.vendor_id, "enrollment_token": token}) + "\n"
        )
    else:
        sys.stdout.write(token + "\n")
    sys.stdout.flush()
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from broker.server import open_store
    from broker.services.reconcile import reconcile

    store = open_store(Path(args.data_dir), _db_url(args))
    try:
        if args.csv is not None:
            with Path(args.csv).open("w", newline="", encoding="utf-8") as out:
                report = reconcile(store, args.day, csv_out=out)
        else:
            report = reconcile(store, args.day)
    finally:
        store.dispose()
    if args.json:
        sys.stdout.write(json.dumps(report.as_json(), sort_keys=True) + "\n")
    else:
        _write_report(report)
    sys.stdout.flush()
    return 0 if report.balanced else 1


def _write_report(report: Reconciliation) -> None:
    """The reconciliation as text: one line per currency, then the verdict."""
    for currency, diff in sorted(report.conservation_cents.items()):
        sys.stdout.write(
            f"{currency}: debits {report.reader_debits_cents[currency]}, "
            f"outstanding {report.outstanding_cents[currency]}, "
            f"redeemed {report.redeemed_cents[currency]}, "
            f"refunded {report.refunded_cents[currency]}, "
            f"losses {report.broker_losses_cents[currency]} -> conservation {diff}\n"
        )
    sys.stdout.write(f"disputes: {len(report.disputes)}; balanced: {report.balanced}\n")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


_DB_URL_ARG = arg("--db-url", help=f"database URL (default: ${DB_URL_ENV} or SQLite)")

COMMANDS: tuple[Command, ...] = (
    Command(
        name="serve",
        help="serve the broker's gRPC API and, with --web-addr, its web portal",
        description="Serve the broker's gRPC API (health and reflection included) and, "
        "with --web-addr, the readers' web portal.",
        epilog=_SERVE_EPILOG,
        arguments=(
            arg("--data-dir", required=True, help="key, id and SQLite database live here"),
            arg(
                "--grpc-addr",
                default=DEFAULT_GRPC_ADDR,
                metavar="H:P",
                help=f"gRPC listen address; port 0 picks a free port (default {DEFAULT_GRPC_ADDR})",
            ),
            arg(
                "--web-addr",
                metavar="H:P",
                help="serve the reader web portal here; port 0 picks a free port "
                "(default: no portal)",
            ),
            arg(
                "--db-url",
                help=f"SQLAlchemy database URL (default: ${DB_URL_ENV} or the data dir's SQLite)",
            ),
            arg(
                "--insecure",
                action="store_true",
                help="allow a plaintext listener on a non-loopback address",
            ),
            arg(
                "--broker-id",
                default="broker",
                help="broker id [a-z0-9-]{1,32}, used only when the data dir is made "
                "(default broker)",
            ),
            arg(
                "--demo-deposit-minor",
                type=_non_negative,
                default=10_000,
                metavar="N",
                help="demo bank: opening deposit per currency for each new reader (default 10000)",
            ),
            arg(
                "--currency",
                action="extend",
                nargs="+",
                metavar="CUR",
                help="currencies offered (ISO 4217, repeatable; default EUR)",
            ),
        ),
        handler=_serve,
    ),
    Command(
        name="add-vendor",
        help="admit a vendor; prints its one-time enrollment token",
        description="Admit a vendor and print its one-time enrollment token.",
        epilog=_ADD_VENDOR_EPILOG,
        arguments=(
            arg("vendor_id", metavar="ID", help="vendor id [a-z0-9-]{1,32}"),
            arg("--origin", metavar="URL", help="fix the vendor's web origin"),
            arg("--data-dir", required=True, help="the broker's data dir"),
            _DB_URL_ARG,
            arg("--json", action="store_true", help="print a JSON object"),
        ),
        handler=_add_vendor,
    ),
    Command(
        name="reconcile",
        help="check the books: bank vs ledger vs claims, per currency",
        description=(
            "Reconcile the books as of the end of a UTC day: reader debits against "
            "outstanding coin value + redeemed + refunded - broker losses, per currency "
            "(conservation_cents is 0 in every currency when the books balance), every "
            "ledger transaction balanced, vendor payouts against redeemed claims, and the "
            "disputes. Exit code 0 when balanced, 1 otherwise."
        ),
        epilog=_RECONCILE_EPILOG,
        arguments=(
            arg("--data-dir", required=True, help="the broker's data dir"),
            arg(
                "--day", required=True, metavar="YYYY-MM-DD", help="the UTC day to reconcile up to"
            ),
            _DB_URL_ARG,
            arg("--json", action="store_true", help="print one JSON line"),
            arg(
                "--csv",
                metavar="FILE",
                type=Path,
                help="also write the day's ledger entries as CSV",
            ),
        ),
        handler=_reconcile,
    ),
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `broker` with its subcommands (:data:`COMMANDS`) to the `netpay` parser."""
    broker = sub.add_parser(
        "broker",
        help="run the broker and administer it",
        description="The NetPay broker: sells coins, keeps their custody, certifies vendors.",
        epilog=_BROKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = broker.add_subparsers(dest="broker_command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        add_command(commands, command)
