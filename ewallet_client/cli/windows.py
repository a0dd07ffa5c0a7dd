"""``open-window``, ``close-window`` and ``windows``: cookie-cache windows."""

from __future__ import annotations

import argparse
import sys

from ewallet_client.cli.output import (
    emit,
    iso,
    open_wallet,
    print_notes,
    say,
    window_json,
)
from ewallet_client.cli.table import MAX_AMOUNT, command
from ewallet_client.wallet import MAX_WINDOW_UNITS
from netpay.commands import Command, arg
from netpay.money import Money

__all__ = ["COMMANDS"]


def _open_window(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        window = wallet.open_window(args.url, args.units, args.max_amount)
        print_notes(wallet)
        out = window_json(window)
        if args.print_handle:
            out["handle"] = wallet.window_handle(window.window_id)
    emit(out)
    say(
        f"netpay: opened a window of {window.units} words at {window.vendor_id} "
        f"({Money(window.units * window.unit_value_minor, window.currency)}); "
        f"`netpay wallet read` uses it, `netpay wallet close-window` refunds the rest"
    )
    return 0


def _close_window(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        closed = wallet.close_window(args.url)
        print_notes(wallet)
    emit(closed.to_json())
    if closed.credit is None:
        say(f"netpay: the window at {closed.window.vendor_id} was already closed by the vendor")
    else:
        say(
            f"netpay: closed the window at {closed.window.vendor_id}: "
            f"{closed.credit.refund_units} words credited back"
        )
    return 0


def _windows(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        windows = wallet.windows()
    if args.json:
        for w in windows:
            emit(window_json(w))
        return 0
    if not windows:
        sys.stdout.write("no windows (netpay wallet open-window URL --units M)\n")
    for w in windows:
        sys.stdout.write(
            f"{w.window_id:>4}  {w.state.value:8} {w.vendor_id:<16} {w.words_left:>4} of "
            f"{w.units:>3} words left  coin {w.ecoin_id} ({w.window_from}, {w.window_top}]"
            f"  expires {iso(w.expires_at_ms) or '-'}\n"
        )
    return 0


COMMANDS: tuple[Command, ...] = (
    command(
        name="open-window",
        help="prepay M words at URL's newspaper in one payment (a cookie-cache window); "
        "`read` then pays that site's clicks from it; prints the window as JSON",
        example="netpay wallet open-window http://127.0.0.1:8001/ --units 50",
        handler=_open_window,
        arguments=(
            arg("url", metavar="URL", help="an article or any page of the site"),
            arg(
                "--units",
                type=int,
                required=True,
                metavar="M",
                help=f"words to prepay, 1..{MAX_WINDOW_UNITS}",
            ),
            MAX_AMOUNT,
            arg(
                "--print-handle",
                action="store_true",
                help="also print the window's cookie value: a BEARER SECRET that spends the "
                "window's words (anyone holding it can read on your money); kept out of "
                "the output unless asked",
            ),
        ),
    ),
    command(
        name="close-window",
        help="close the wallet's window at URL's newspaper; the vendor's signed credit for "
        "the unused words is verified, stored and printed as JSON",
        example="netpay wallet close-window http://127.0.0.1:8001/",
        handler=_close_window,
        arguments=(arg("url", metavar="URL"),),
    ),
    command(
        name="windows",
        help="the windows the wallet opened: state, words left, credit",
        example="netpay wallet windows --json",
        handler=_windows,
        arguments=(
            arg("--json", action="store_true", help="one JSON object per window on stdout"),
        ),
    ),
)
