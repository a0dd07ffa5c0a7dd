"""``netpay wallet [--wallet-dir DIR] COMMAND``: the reader's wallet on the command line.

Machine output is one JSON object per line on stdout; human messages go to
stderr. NetPay errors raise out of the handlers; ``netpay.cli.main`` prints
them as ``netpay: <code>: <detail>`` and exits 2.

Each command is a small handler registered in a table (a
:class:`netpay.commands.Command` made by :func:`ewallet_client.cli.table.command`:
name, help, example, arguments, handler), one module per area: ``coins`` (register, login, buy,
balance, history), ``paying`` (read, authorize), ``windows`` (open-window,
close-window, windows), ``bridge`` (bridge, approve-origin, revoke-origin,
origins) and ``limits`` (limits, autoload). Handlers call the
:class:`~ewallet_client.wallet.Wallet`'s use cases, never its store.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ewallet_client.cli import bridge, coins, limits, paying, windows
from ewallet_client.cli.output import coin_json, read_password_file, window_json
from ewallet_client.cli.table import add_wallet_command
from netpay.commands import Command

__all__ = ["COMMANDS", "add_commands", "coin_json", "read_password_file", "window_json"]

# The order `netpay wallet --help` lists them in.
COMMANDS: tuple[Command, ...] = (
    *coins.COMMANDS,
    *paying.COMMANDS,
    *windows.COMMANDS,
    *bridge.COMMANDS,
    *limits.COMMANDS,
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``netpay wallet`` and its subcommands."""
    wallet = sub.add_parser(
        "wallet",
        help="the reader's client-side e-wallet",
        description=(
            "The reader's client-side e-wallet: buys coins from the broker and pays "
            "vendors' 402 challenges with paywords. Machine output is JSON on stdout, "
            "messages on stderr; NetPay errors exit 2."
        ),
        epilog=(
            "examples:\n"
            "  netpay wallet register --broker 127.0.0.1:7000 --username ann "
            "--password-file pw.txt\n"
            "  netpay wallet buy --units 100\n"
            "  netpay wallet read http://127.0.0.1:8001/articles/1\n"
            "  netpay wallet open-window http://127.0.0.1:8001/ --units 50\n"
            '  curl -H "Authorization: $(netpay wallet authorize URL)" URL\n'
            "  netpay wallet approve-origin https://news.example && netpay wallet bridge\n"
            "  netpay wallet limits --max-click-minor 50 --max-day-minor 500\n"
            "  netpay wallet autoload --below-minor 100 --units 500\n"
            "\n"
            "default wallet dir: $NETPAY_WALLET_DIR, else $XDG_DATA_HOME/netpay/wallet,\n"
            "else ~/.local/share/netpay/wallet\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wallet.add_argument(
        "--wallet-dir", type=Path, default=None, metavar="DIR", help="the wallet directory"
    )
    cmds = wallet.add_subparsers(dest="wallet_command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        add_wallet_command(cmds, command)
