"""``bridge``, ``approve-origin``, ``revoke-origin`` and ``origins``: the browser bridge."""

from __future__ import annotations

import argparse
import sys

from ewallet_client.bridge import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_CLICK_MINOR,
    DEFAULT_MAX_DAY_MINOR,
    BridgeCaps,
    check_cap,
    normalize_origin,
    start_bridge,
    utc_day,
)
from ewallet_client.cli.output import (
    emit,
    open_wallet,
    say,
)
from ewallet_client.cli.table import command
from netpay.commands import Command, arg
from netpay.errors import NotFound
from netpay.money import Money
from netpay.ready import install_stop_handlers

__all__ = ["COMMANDS"]


def _bridge(args: argparse.Namespace) -> int:
    caps = BridgeCaps(max_click_minor=args.max_click, max_day_minor=args.max_day)
    stop = install_stop_handlers()
    wallet = open_wallet(args)
    try:
        handle = start_bridge(wallet, listen=args.listen, caps=caps, close_wallet=True)
    except BaseException:
        wallet.close()
        raise
    try:
        origins = wallet.approved_origins()
        emit({"bridge": handle.url})
        say(
            f"netpay: wallet bridge on {handle.url} for {len(origins)} approved origin(s); "
            f"caps {caps.max_click_minor} per click, {caps.max_day_minor} per day and origin"
        )
        if not origins:
            say("netpay: no origin is approved yet: netpay wallet approve-origin URL")
        stop.wait()
    finally:
        handle.stop()
    return 0


def _optional_cap(value: int | None, name: str) -> int | None:
    return None if value is None else check_cap(value, name)


def _approve_origin(args: argparse.Namespace) -> int:
    origin = normalize_origin(args.url)
    with open_wallet(args) as wallet:
        approved = wallet.approve_origin(
            origin,
            max_click_minor=_optional_cap(args.max_click, "--max-click"),
            max_day_minor=_optional_cap(args.max_day, "--max-day"),
        )
    emit(approved.to_json())
    say(f"netpay: pages of {origin} may now ask the wallet bridge to pay their articles")
    return 0


def _revoke_origin(args: argparse.Namespace) -> int:
    origin = normalize_origin(args.url)
    with open_wallet(args) as wallet:
        if not wallet.revoke_origin(origin):
            raise NotFound(f"{origin} is not an approved origin")
    emit({"origin": origin, "revoked": True})
    return 0


def _origins(args: argparse.Namespace) -> int:
    with open_wallet(args) as wallet:
        day = utc_day(wallet.clock.now_ms())
        rows = [(o, wallet.bridge_spending(o.origin, day)) for o in wallet.approved_origins()]
    if args.json:
        for o, spent in rows:
            line = o.to_json()
            line["spent_today_minor"] = {cur: minor for cur, (minor, _) in spent.items()}
            emit(line)
        return 0
    if not rows:
        sys.stdout.write("no approved origins (netpay wallet approve-origin URL)\n")
    for o, spent in rows:
        click = "bridge's" if o.max_click_minor is None else str(o.max_click_minor)
        per_day = "bridge's" if o.max_day_minor is None else str(o.max_day_minor)
        today = ", ".join(f"{Money(m, c)}" for c, (m, _) in sorted(spent.items())) or "nothing"
        sys.stdout.write(f"{o.origin}  max click {click}  max day {per_day}  spent today {today}\n")
    return 0


COMMANDS: tuple[Command, ...] = (
    command(
        name="bridge",
        help="serve the wallet to approved newspaper pages on a loopback address (the browser "
        'bridge); prints {"bridge": URL} when ready, stops on Ctrl-C or SIGTERM',
        example="netpay wallet bridge --listen 127.0.0.1:8790 --max-click 50 --max-day 300",
        handler=_bridge,
        arguments=(
            arg(
                "--listen",
                default=DEFAULT_LISTEN,
                metavar="IP:PORT",
                help=f"a loopback IP address only, port 0 picks one (default {DEFAULT_LISTEN})",
            ),
            arg(
                "--max-click",
                type=int,
                default=DEFAULT_MAX_CLICK_MINOR,
                metavar="A",
                help=f"refuse a price above A minor units (default {DEFAULT_MAX_CLICK_MINOR})",
            ),
            arg(
                "--max-day",
                type=int,
                default=DEFAULT_MAX_DAY_MINOR,
                metavar="A",
                help="refuse a click that takes an origin's spending of the UTC day above A "
                f"minor units (default {DEFAULT_MAX_DAY_MINOR})",
            ),
        ),
    ),
    command(
        name="approve-origin",
        help="let the pages of URL's web origin ask the wallet bridge to pay their articles "
        "(again: change its caps); without caps the bridge's apply, with them the lower wins",
        example="netpay wallet approve-origin https://news.example --max-click 20 --max-day 200",
        handler=_approve_origin,
        arguments=(
            arg("url", metavar="URL", help="the site (its scheme, host and port count)"),
            arg("--max-click", type=int, metavar="A", help="this site's cap per click"),
            arg("--max-day", type=int, metavar="A", help="this site's cap per UTC day"),
        ),
    ),
    command(
        name="revoke-origin",
        help="stop the wallet bridge paying for the pages of URL's web origin",
        example="netpay wallet revoke-origin https://news.example",
        handler=_revoke_origin,
        arguments=(arg("url", metavar="URL"),),
    ),
    command(
        name="origins",
        help="the origins approved for the wallet bridge, their caps and today's spending",
        example="netpay wallet origins --json",
        handler=_origins,
        arguments=(
            arg("--json", action="store_true", help="one JSON object per origin on stdout"),
        ),
    ),
)
