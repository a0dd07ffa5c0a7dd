"""`netpay` entry point: hands each subcommand to its party's CLI module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from broker import cli as broker_cli
from ewallet_client import cli as wallet_cli
from netpay.cli import demo
from netpay.errors import NetPayError
from netpay.ready import die_with_parent
from vendor import cli as vendor_cli

__all__ = ["build_parser", "main"]

EPILOG = """examples:
  netpay demo --json
  netpay broker serve --data-dir /tmp/broker
  netpay vendor serve --data-dir /tmp/v1 --broker 127.0.0.1:7000 --enroll TOKEN
  netpay wallet read http://127.0.0.1:8001/articles/1
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netpay",
        description="NetPay micro-payments: broker, vendors (newspapers) and the reader's wallet.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    broker_cli.add_commands(sub)
    vendor_cli.add_commands(sub)
    wallet_cli.add_commands(sub)
    demo.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    die_with_parent()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except NetPayError as err:
        print(f"netpay: {err.code}: {err.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
