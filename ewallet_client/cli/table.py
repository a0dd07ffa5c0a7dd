"""The wallet's command table: each ``netpay wallet`` command as data.

The table's shape is the one every party's CLI shares
(:mod:`netpay.commands`); a wallet command states one example, which
becomes the epilog of its ``--help``, and every command also takes
``--wallet-dir`` after its name. The handlers live by area in the sibling
modules; the table's order is the order ``netpay wallet --help`` lists.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ewallet_client.wallet import DEFAULT_MAX_AMOUNT_MINOR
from netpay.commands import Arg, Command, Handler, add_command, arg

__all__ = ["MAX_AMOUNT", "add_wallet_command", "command"]

MAX_AMOUNT = arg(
    "--max-amount",
    type=int,
    default=DEFAULT_MAX_AMOUNT_MINOR,
    metavar="A",
    help=f"refuse a price above A minor units (default {DEFAULT_MAX_AMOUNT_MINOR})",
)

# Also accepted after the command; the value before it is the default.
_WALLET_DIR = arg("--wallet-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def command(
    *, name: str, help: str, example: str, handler: Handler, arguments: tuple[Arg, ...] = ()
) -> Command:
    """A ``netpay wallet`` command whose ``--help`` ends with ``example``."""
    return Command(
        name=name,
        help=help,
        handler=handler,
        arguments=arguments,
        epilog=f"example:\n  {example}\n",
    )


def add_wallet_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], wallet_command: Command
) -> argparse.ArgumentParser:
    """The command's subparser, with the hidden ``--wallet-dir`` first."""
    return add_command(sub, wallet_command, _WALLET_DIR)
