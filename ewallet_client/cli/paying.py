"""``read`` and ``authorize``: paying for one click."""

from __future__ import annotations

import argparse
import json
import sys

from ewallet_client.cli.output import (
    open_wallet,
    print_notes,
    say,
)
from ewallet_client.cli.table import MAX_AMOUNT, command
from ewallet_client.wallet import ReadResult
from netpay.commands import Command, arg
from netpay.money import Money

__all__ = ["COMMANDS"]


def _receipt_line(result: ReadResult) -> dict[str, object]:
    r = result.receipt
    return {
        "url": result.url,
        "status": result.status,
        "paid_minor": result.amount_paid_minor,
        "currency": result.currency,
        "ecoin_id": result.ecoin_id,
        "balance_words": result.balance_words,
        "vendor_balance_words": result.vendor_balance_words,
        "window_id": result.window_id,
        "window_words_left": result.window_words_left,
        "receipt": None
        if r is None
        else {
            "vendor_id": r.vendor_id,
            "ecoin_id": r.ecoin_id,
            "epoch": r.epoch,
            "from_index": r.from_index,
            "to_index": r.to_index,
            "amount_minor": r.amount_minor,
            "currency": r.currency,
            "item_id": r.item_id,
            "time_ms": r.time_ms,
        },
    }


def _read(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        result = wallet.read(args.url, args.max_amount)
        print_notes(wallet)
    sys.stdout.flush()
    sys.stdout.buffer.write(result.body)
    sys.stdout.buffer.flush()
    if args.json_receipt:
        print(json.dumps(_receipt_line(result), sort_keys=True), file=sys.stderr)
    elif result.paid and result.currency is not None:
        price = Money(result.amount_paid_minor, result.currency)
        if result.receipt is not None:
            r = result.receipt
            source = "" if result.window_id is None else " from the window"
            say(
                f"netpay: paid {price}{source} to {r.vendor_id} for {r.item_id!r} "
                f"(coin {r.ecoin_id}, words ({r.from_index}, {r.to_index}])"
            )
        if result.window_id is not None:
            say(f"netpay: window: {result.window_words_left} words left")
        say(f"netpay: balance: {result.balance_words} words left on coin {result.ecoin_id}")
    if result.receipt_error is not None:
        raise result.receipt_error
    if result.status >= 400:
        say(f"netpay: the server answered HTTP {result.status}")
        return 1
    return 0


def _authorize(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        header = wallet.authorize(args.url, args.max_amount)
        print_notes(wallet)
    sys.stdout.write(header + "\n")
    sys.stdout.flush()
    return 0


COMMANDS: tuple[Command, ...] = (
    command(
        name="read",
        help="fetch URL, paying its 402 challenge; the resource goes to stdout, "
        "the receipt and balance to stderr",
        example=(
            "netpay wallet read http://127.0.0.1:8001/articles/1 --max-amount 10 > article.html"
        ),
        handler=_read,
        arguments=(
            arg("url", metavar="URL"),
            MAX_AMOUNT,
            arg(
                "--json-receipt", action="store_true", help="the receipt as one JSON line on stderr"
            ),
        ),
    ),
    command(
        name="authorize",
        help="print the Authorization header value that pays for URL once (the wallet's index "
        "moves now: an unused header leaves void words, returned after the coin expires)",
        example='curl -H "Authorization: $(netpay wallet authorize URL)" URL',
        handler=_authorize,
        arguments=(
            arg("url", metavar="URL"),
            MAX_AMOUNT,
        ),
    ),
)
