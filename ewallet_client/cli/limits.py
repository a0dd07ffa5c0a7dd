"""``limits`` and ``autoload``: the reader's spending limits and auto-load agreements."""

from __future__ import annotations

import argparse
import sys

from ewallet_client.cli.output import (
    emit,
    open_wallet,
    say,
)
from ewallet_client.cli.table import command
from ewallet_client.store.records import KEEP, AutoloadAgreement, Keep
from netpay.commands import Command, arg
from netpay.errors import InvalidArgument
from netpay.money import Money

__all__ = ["COMMANDS", "autoload_text"]


def _limit_value(text: str) -> int | None:
    """``N`` minor units, or ``none`` (no limit)."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of minor units, or none") from None


def _money_or_none(minor: object, currency: str) -> str:
    return "none" if not isinstance(minor, int) else str(Money(minor, currency))


def _limits(args: argparse.Namespace) -> int:
    click: int | Keep | None = args.max_click_minor
    day: int | Keep | None = args.max_day_minor
    setting = click is not KEEP or day is not KEEP
    sync_error: str | None = None
    with open_wallet(args) as wallet:
        if setting:
            currency = args.currency or "EUR"
            wallet.set_spending_limits(currency, max_click_minor=click, max_day_minor=day)
            sync_error = wallet.limits_sync_error
            rows = wallet.spending_report(currency)
        else:
            if args.sync:
                wallet.sync_spending_limits()
            rows = wallet.spending_report(args.currency)
    if args.json:
        for row in rows:
            emit(row)
    else:
        for row in rows:
            cur = str(row["currency"])
            sys.stdout.write(
                f"{cur}  max click {_money_or_none(row['max_click_minor'], cur)}  "
                f"max day {_money_or_none(row['max_day_minor'], cur)}  "
                f"spent today ({row['day']}) {_money_or_none(row['spent_today_minor'], cur)} "
                f"in {row['payments_today']} payment(s)\n"
            )
    if setting:
        say(
            f"netpay: spending limits in {rows[0]['currency']} set; they apply to every "
            "payment with this wallet's coins (read, authorize, open-window, the bridge)"
        )
        if sync_error is not None:
            say(
                f"netpay: warning: the broker did not take them ({sync_error}); your "
                "server-side coins keep the broker's limits until you set them again"
            )
    return 0


def autoload_text(a: AutoloadAgreement) -> str:
    text = (
        f"when the {a.currency} coins fall below {Money(a.below_minor, a.currency)}, buy "
        f"{a.units} words of {Money(a.unit_value_minor, a.currency)} "
        f"({Money(a.value_minor, a.currency)}) from the bank account"
    )
    if not a.enabled:
        text = f"off ({a.currency})"
    if a.pending:
        text += f"; coin {a.last_ecoin_id} is being bought"
    if a.last_error:
        text += f"; last attempt failed: {a.last_error}"
    return text


def _autoload_json(currency: str, a: AutoloadAgreement | None) -> dict[str, object]:
    if a is not None:
        return a.to_json()
    return {
        "currency": currency,
        "enabled": False,
        "below_minor": None,
        "units": None,
        "unit_value": None,
        "value_minor": None,
        "created_at_ms": None,
        "last_attempt_at_ms": None,
        "last_ecoin_id": None,
        "last_error": None,
        "pending": False,
    }


def _autoload(args: argparse.Namespace) -> int:
    terms = (args.below_minor, args.units)
    if args.off and any(t is not None for t in (*terms, args.unit_value)):
        raise InvalidArgument("--off takes no --below-minor, --units or --unit-value")
    if not args.off and (None in terms) and any(t is not None for t in (*terms, args.unit_value)):
        raise InvalidArgument("an auto-load agreement needs both --below-minor and --units")
    currency = args.currency or "EUR"
    with open_wallet(args) as wallet:
        if args.off:
            shown = [(currency, wallet.autoload_off(currency))]
            say(f"netpay: auto-load in {currency} is off")
        elif args.below_minor is not None:
            agreement = wallet.set_autoload(
                currency, args.below_minor, args.units, args.unit_value or 1
            )
            shown = [(currency, agreement)]
            say(f"netpay: auto-load: {autoload_text(agreement)}")
        elif args.currency is not None:
            one = wallet.autoload(args.currency)
            shown = [(args.currency, one if one is not None and one.enabled else None)]
        else:
            shown = [(a.currency, a) for a in wallet.autoload_agreements()]
    if args.json:
        for cur, a in shown:
            emit(_autoload_json(cur, a))
        return 0
    if not shown:
        sys.stdout.write(
            "no auto-load agreement (netpay wallet autoload --below-minor T --units N)\n"
        )
    for cur, a in shown:
        sys.stdout.write(f"{cur}: {'none' if a is None else autoload_text(a)}\n")
    return 0


COMMANDS: tuple[Command, ...] = (
    command(
        name="limits",
        help="show or set your spending limits per click and per UTC day (per currency, in "
        "minor units; none = no limit); they apply to every payment with this wallet's "
        "coins: read, authorize, open-window (a window counts against the day) and the "
        "bridge. Setting them also sets them at the broker (for your server-side coins); "
        "login and --sync take the broker's (set on the portal) into the wallet.",
        example=(
            "netpay wallet limits --currency EUR --max-click-minor 50 --max-day-minor 500 --json"
        ),
        handler=_limits,
        arguments=(
            arg("--currency", metavar="C", help="ISO 4217 (setting: default EUR; showing: all)"),
            arg(
                "--max-click-minor",
                type=_limit_value,
                default=KEEP,
                metavar="N|none",
                help="refuse a click above N minor units (none: no limit)",
            ),
            arg(
                "--max-day-minor",
                type=_limit_value,
                default=KEEP,
                metavar="N|none",
                help="refuse a payment that takes the UTC day's spending above N (none: no limit)",
            ),
            arg(
                "--sync",
                action="store_true",
                help=(
                    "first take the limits kept at the broker (set on "
                    "the portal or by another wallet)"
                ),
            ),
            arg("--json", action="store_true", help="one JSON object per currency on stdout"),
        ),
    ),
    command(
        name="autoload",
        help="a standing agreement: when a payment leaves your usable coins in a currency "
        "below T minor units, buy a new coin of N words from your bank account at the "
        "broker (at most one per payment; a failure never fails the payment and is tried "
        "again after the next one). Without terms: show the agreements.",
        example="netpay wallet autoload --currency EUR --below-minor 100 --units 500 --json\n"
        "  netpay wallet autoload --currency EUR --off",
        handler=_autoload,
        arguments=(
            arg("--currency", metavar="C", help="ISO 4217 (setting: default EUR; showing: all)"),
            arg("--below-minor", type=int, metavar="T", help="the threshold, minor units"),
            arg("--units", type=int, metavar="N", help="words in the coin to buy"),
            arg("--unit-value", type=int, metavar="U", help="minor units per word (default 1)"),
            arg("--off", action="store_true", help="end the agreement"),
            arg("--json", action="store_true", help="one JSON object per agreement on stdout"),
        ),
    ),
)
