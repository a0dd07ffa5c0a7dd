"""``register``, ``login``, ``buy``, ``balance`` and ``history``: the reader's account and coins."""

from __future__ import annotations

import argparse
import sys

from ewallet_client.cli.limits import autoload_text
from ewallet_client.cli.output import (
    coin_json,
    emit,
    iso,
    open_wallet,
    read_password_file,
    say,
    window_json,
)
from ewallet_client.cli.table import command
from netpay.commands import Command, arg
from netpay.errors import InvalidArgument, NetPayError
from netpay.money import Money

__all__ = ["COMMANDS"]


def _register(args: argparse.Namespace) -> int:
    password = read_password_file(args.password_file)
    with open_wallet(args) as wallet:
        reader_id = wallet.register(args.broker, args.username, password)
        st = wallet.settings()
    emit({"reader_id": reader_id, "broker_id": st.broker_id, "broker": st.broker_addr})
    say(f"registered {args.username!r} at broker {st.broker_id} and logged in")
    return 0


def _login(args: argparse.Namespace) -> int:
    password = read_password_file(args.password_file)
    with open_wallet(args) as wallet:
        wallet.login(args.broker, args.username, password)
        st = wallet.settings()
    emit({"reader_id": st.reader_id, "broker_id": st.broker_id, "broker": st.broker_addr})
    say(f"logged in as {args.username!r} at broker {st.broker_id}")
    return 0


def _buy(args: argparse.Namespace) -> int:
    if args.server_side:
        if not args.password_file:
            raise InvalidArgument("--server-side needs --password-file (the wallet password)")
        password = read_password_file(args.password_file)
        with open_wallet(args) as wallet:
            bought = wallet.buy_server_side(args.units, password, args.unit_value, args.currency)
        expires = bought["expires_at_ms"]
        assert isinstance(expires, int)
        emit({**bought, "expires_at": iso(expires)})
        say(
            f"bought server-side coin {bought['ecoin_id']}: "
            f"{Money(args.units * args.unit_value, args.currency)}; sign in at a newspaper "
            "with this e-coin id and the wallet password (the broker keeps the chain)"
        )
        return 0
    if args.password_file:
        raise InvalidArgument("--password-file is for --server-side coins only")
    with open_wallet(args) as wallet:
        coin = wallet.buy(args.units, args.unit_value, args.currency)
    emit(coin_json(coin))
    say(f"bought coin {coin.ecoin_id}: {Money(coin.value_minor, coin.currency)}")
    return 0


def _balance(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        coins = wallet.coins()
        windows = wallet.open_windows()
        autoloads = wallet.autoload_agreements()
        bank: list[dict[str, object]] | None
        try:
            bank = wallet.bank_balances()
        except NetPayError as err:
            bank = None
            say(f"netpay: bank balance unavailable: {err.code}: {err.detail}")
    totals: dict[str, int] = {}
    for c in coins:
        if c.state.value == "active":
            totals[c.currency] = totals.get(c.currency, 0) + c.value_left_minor
    if args.json:
        emit(
            {
                "coins": [coin_json(c) for c in coins],
                "wallet_minor": totals,
                "bank": bank,
                "windows": [window_json(w) for w in windows],
                "autoload": {a.currency: a.to_json() for a in autoloads},
            }
        )
        return 0
    out = sys.stdout
    if not coins:
        out.write("no coins (netpay wallet buy --units N)\n")
    for c in coins:
        out.write(
            f"{c.ecoin_id}  {c.state.value:8} {c.words_left:>8} words  "
            f"{Money(c.value_left_minor, c.currency)!s:>14}  expires {iso(c.expires_at_ms)}"
            f"  last vendor {c.last_vendor or '-'}\n"
        )
    for w in windows:
        out.write(
            f"window at {w.vendor_id} ({w.origin}): {w.words_left} of {w.units} words left "
            f"on coin {w.ecoin_id}, expires {iso(w.expires_at_ms)}\n"
        )
    for currency, minor in sorted(totals.items()):
        out.write(f"wallet total: {Money(minor, currency)}\n")
    for a in autoloads:
        out.write(f"auto-load: {autoload_text(a)}\n")
    for b in bank or []:
        out.write(f"bank: {Money(int(str(b['balance_minor'])), str(b['currency']))}\n")
    return 0


def _history(args: argparse.Namespace) -> int:
    if args.broker:
        return _broker_history(args)
    with open_wallet(args) as wallet:
        receipts = wallet.history()
    if args.json:
        for r in receipts:
            emit(r)
        return 0
    if not receipts:
        sys.stdout.write("no receipts yet\n")
    for r in receipts:
        when = iso(int(str(r["time_ms"])))
        price = Money(int(str(r["amount_minor"])), str(r["currency"]))
        sys.stdout.write(
            f"{when}  {r['vendor_id']:<16} {price!s:>12}  item {r['item_id']}  "
            f"coin {r['ecoin_id']} ({r['from_index']}, {r['to_index']}]\n"
        )
    return 0


def _broker_history(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        entries = wallet.broker_history(ecoin_id=args.coin or "", limit=args.limit)
    if args.json:
        for e in entries:
            emit(e)
        return 0
    if not entries:
        sys.stdout.write("nothing at the broker yet\n")
    for e in entries:
        amount = Money(int(str(e["amount_minor"])), str(e["currency"]))
        where = f"{e['vendor_id']} item {e['item_id']}" if e["vendor_id"] else ""
        sys.stdout.write(
            f"{iso(int(str(e['time_ms'])))}  {e['kind']:<14} {amount!s:>12}  "
            f"coin {e['ecoin_id']}  {where}\n"
        )
    return 0


COMMANDS: tuple[Command, ...] = (
    command(
        name="register",
        help="open a reader account at the broker and log in (keeps a token, never the password)",
        example=(
            "netpay wallet register --broker 127.0.0.1:7000 --username ann --password-file pw.txt"
        ),
        handler=_register,
        arguments=(
            arg("--broker", required=True, metavar="H:P", help="the broker's gRPC address"),
            arg("--username", required=True, metavar="U"),
            arg(
                "--password-file", required=True, metavar="F", help="its first line is the password"
            ),
        ),
    ),
    command(
        name="login",
        help="log in again (at the stored broker unless --broker is given)",
        example="netpay wallet login --username ann --password-file pw.txt",
        handler=_login,
        arguments=(
            arg("--broker", metavar="H:P", help="the broker's gRPC address"),
            arg("--username", required=True, metavar="U"),
            arg(
                "--password-file", required=True, metavar="F", help="its first line is the password"
            ),
        ),
    ),
    command(
        name="buy",
        help="buy a coin of N words from the broker (client-side, or --server-side: the "
        "broker keeps the chain); prints the coin as JSON",
        example="netpay wallet buy --units 200 --unit-value 1 --currency EUR\n"
        "  netpay wallet buy --units 500 --server-side --password-file wallet-pw.txt",
        handler=_buy,
        arguments=(
            arg("--units", type=int, required=True, metavar="N", help="words in the coin"),
            arg(
                "--unit-value",
                type=int,
                default=1,
                metavar="U",
                help="minor units per word (default 1)",
            ),
            arg("--currency", default="EUR", metavar="C", help="ISO 4217 (default EUR)"),
            arg(
                "--server-side",
                action="store_true",
                help="a server-side wallet: the broker makes and keeps the chain (encrypted); "
                "the wallet stores nothing of it",
            ),
            arg(
                "--password-file",
                metavar="F",
                help="with --server-side: its first line is the new wallet password (8..256 chars)",
            ),
        ),
    ),
    command(
        name="balance",
        help="the coins with words and value left, and the bank balance at the broker",
        example="netpay wallet balance --json",
        handler=_balance,
        arguments=(arg("--json", action="store_true", help="one JSON object on stdout"),),
    ),
    command(
        name="history",
        help="the receipts of every paid click; with --broker, the money history the broker "
        "keeps (purchases, redeemed clicks, window credits, vendor and expiry refunds)",
        example="netpay wallet history --json\n  netpay wallet history --broker --limit 20 --json",
        handler=_history,
        arguments=(
            arg("--json", action="store_true", help="one JSON object per line on stdout"),
            arg(
                "--broker",
                action="store_true",
                help="the broker's history instead of local receipts",
            ),
            arg("--coin", metavar="ID", help="with --broker: one coin only"),
            arg(
                "--limit",
                type=int,
                default=100,
                metavar="N",
                help="with --broker: at most N entries (1..1000, default 100)",
            ),
        ),
    ),
)
