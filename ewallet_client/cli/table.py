"""The command table: each ``netpay wallet`` command as data, and how it becomes a parser.

A :class:`Command` is a name, a help line, an example (the epilog of its
``--help``), its arguments and its handler; :func:`add_command` turns one
into an argparse subparser. The handlers live by area in the sibling
modules; the table's order is the order ``netpay wallet --help`` lists.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ewallet_client.wallet import DEFAULT_MAX_AMOUNT_MINOR

__all__ = ["MAX_AMOUNT", "Arg", "Command", "Handler", "add_command", "arg"]

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: its flags (or name) and options."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    """One ``netpay wallet`` command."""

    name: str
    help: str
    example: str
    handler: Handler
    arguments: tuple[Arg, ...] = ()


MAX_AMOUNT = arg(
    "--max-amount",
    type=int,
    default=DEFAULT_MAX_AMOUNT_MINOR,
    metavar="A",
    help=f"refuse a price above A minor units (default {DEFAULT_MAX_AMOUNT_MINOR})",
)


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], command: Command
) -> argparse.ArgumentParser:
    """The command's subparser: help, its example as the epilog, its arguments."""
    p = sub.add_parser(
        command.name,
        help=command.help,
        description=command.help,
        epilog=f"example:\n  {command.example}\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Also accepted after the command; the value before it is the default.
    p.add_argument("--wallet-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for a in command.arguments:
        p.add_argument(*a.flags, **a.options)
    p.set_defaults(func=command.handler)
    return p
