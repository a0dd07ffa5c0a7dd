"""The command table every party's CLI is made of (``netpay broker|vendor|wallet ...``).

A :class:`Command` is data: its name, help line, description, examples (the
epilog of its ``--help``), its arguments (:func:`arg`, one ``add_argument``
call each) and the function that runs it. :func:`add_command` turns one into
an argparse subparser. Each party keeps its table and its handlers in its own
``cli`` module; this module only knows argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Arg", "Command", "Handler", "add_command", "arg"]

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: its flags (or name) and its keyword options."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    """One subcommand; ``description`` defaults to ``help``, ``epilog`` holds its examples."""

    name: str
    help: str
    handler: Handler
    arguments: tuple[Arg, ...] = ()
    description: str = ""
    epilog: str = ""


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Command,
    *common: Arg,
) -> argparse.ArgumentParser:
    """The command's subparser: ``common`` arguments first, then its own."""
    parser = sub.add_parser(
        command.name,
        help=command.help,
        description=command.description or command.help,
        epilog=command.epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for argument in (*common, *command.arguments):
        parser.add_argument(*argument.flags, **argument.options)
    parser.set_defaults(func=command.handler)
    return parser
