"""``netpay wallet [--wallet-dir DIR] COMMAND``: the reader's wallet on the command line.

Machine output is one JSON object per line on stdout; human messages go to
stderr. NetPay errors raise out of the handlers; ``netpay.cli.main`` prints
them as ``netpay: <code>: <detail>`` and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

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
from ewallet_client.domain import CoinView
from ewallet_client.store import KEEP, AutoloadAgreement, Keep, WindowView
from ewallet_client.wallet import (
    DEFAULT_MAX_AMOUNT_MINOR,
    MAX_WINDOW_UNITS,
    ReadResult,
    Wallet,
    default_wallet_dir,
)
from netpay.errors import InvalidArgument, NetPayError, NotFound
from netpay.money import Money
from netpay.ready import install_stop_handlers

__all__ = [
    "add_commands",
    "coin_json",
    "read_password_file",
    "window_json",
]

_MAX_PASSWORD_FILE_BYTES = 4096
Handler = Callable[[argparse.Namespace], int]


def read_password_file(path: str) -> str:
    """The first line of ``path`` (``-`` is stdin), without its line ending."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(_MAX_PASSWORD_FILE_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(_MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgument(f"cannot read the password file: {exc.strerror}") from None
    if len(data) > _MAX_PASSWORD_FILE_BYTES:
        raise InvalidArgument("the password file is larger than 4 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("the password file is not UTF-8") from None
    line = text.splitlines()[0] if text else ""
    if not line:
        raise InvalidArgument("the password file's first line is empty")
    return line


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def coin_json(coin: CoinView) -> dict[str, object]:
    out = coin.to_json()
    out["expires_at"] = _iso(coin.expires_at_ms)
    return out


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _wallet(args: argparse.Namespace) -> Wallet:
    return Wallet(args.wallet_dir or default_wallet_dir())


def _warnings(wallet: Wallet) -> None:
    for w in wallet.warnings:
        _say(f"netpay: warning: {w}")
    for a in wallet.autoloads:
        if a.coin is not None:
            _say(
                f"netpay: auto-load: bought coin {a.ecoin_id}: "
                f"{Money(a.coin.value_minor, a.currency)}"
            )
        elif a.error is not None:
            _say(
                f"netpay: warning: auto-load in {a.currency} failed: {a.error.code}: "
                f"{a.error.detail}; it is tried again after the next payment"
            )


# -- handlers -----------------------------------------------------------------


def _register(args: argparse.Namespace) -> int:
    password = read_password_file(args.password_file)
    with _wallet(args) as wallet:
        reader_id = wallet.register(args.broker, args.username, password)
        st = wallet.store.settings()
    _emit({"reader_id": reader_id, "broker_id": st.broker_id, "broker": st.broker_addr})
    _say(f"registered {args.username!r} at broker {st.broker_id} and logged in")
    return 0


def _login(args: argparse.Namespace) -> int:
    password = read_password_file(args.password_file)
    with _wallet(args) as wallet:
        wallet.login(args.broker, args.username, password)
        st = wallet.store.settings()
    _emit({"reader_id": st.reader_id, "broker_id": st.broker_id, "broker": st.broker_addr})
    _say(f"logged in as {args.username!r} at broker {st.broker_id}")
    return 0


def _buy(args: argparse.Namespace) -> int:
    if args.server_side:
        if not args.password_file:
            raise InvalidArgument("--server-side needs --password-file (the wallet password)")
        password = read_password_file(args.password_file)
        with _wallet(args) as wallet:
            bought = wallet.buy_server_side(args.units, password, args.unit_value, args.currency)
        expires = bought["expires_at_ms"]
        assert isinstance(expires, int)
        _emit({**bought, "expires_at": _iso(expires)})
        _say(
            f"bought server-side coin {bought['ecoin_id']}: "
            f"{Money(args.units * args.unit_value, args.currency)}; sign in at a newspaper "
            "with this e-coin id and the wallet password (the broker keeps the chain)"
        )
        return 0
    if args.password_file:
        raise InvalidArgument("--password-file is for --server-side coins only")
    with _wallet(args) as wallet:
        coin = wallet.buy(args.units, args.unit_value, args.currency)
    _emit(coin_json(coin))
    _say(f"bought coin {coin.ecoin_id}: {Money(coin.value_minor, coin.currency)}")
    return 0


def window_json(window: WindowView) -> dict[str, object]:
    out = window.to_json()
    out["expires_at"] = _iso(window.expires_at_ms)
    return out


def _balance(args: argparse.Namespace) -> int:
    with _wallet(args) as wallet:
        coins = wallet.coins()
        windows = wallet.open_windows()
        autoloads = wallet.autoload_agreements()
        bank: list[dict[str, object]] | None
        try:
            bank = wallet.bank_balances()
        except NetPayError as err:
            bank = None
            _say(f"netpay: bank balance unavailable: {err.code}: {err.detail}")
    totals: dict[str, int] = {}
    for c in coins:
        if c.state.value == "active":
            totals[c.currency] = totals.get(c.currency, 0) + c.value_left_minor
    if args.json:
        _emit(
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
            f"{Money(c.value_left_minor, c.currency)!s:>14}  expires {_iso(c.expires_at_ms)}"
            f"  last vendor {c.last_vendor or '-'}\n"
        )
    for w in windows:
        out.write(
            f"window at {w.vendor_id} ({w.origin}): {w.words_left} of {w.units} words left "
            f"on coin {w.ecoin_id}, expires {_iso(w.expires_at_ms)}\n"
        )
    for currency, minor in sorted(totals.items()):
        out.write(f"wallet total: {Money(minor, currency)}\n")
    for a in autoloads:
        out.write(f"auto-load: {_autoload_text(a)}\n")
    for b in bank or []:
        out.write(f"bank: {Money(int(str(b['balance_minor'])), str(b['currency']))}\n")
    return 0


def _history(args: argparse.Namespace) -> int:
    if args.broker:
        return _broker_history(args)
    with _wallet(args) as wallet:
        receipts = wallet.history()
    if args.json:
        for r in receipts:
            _emit(r)
        return 0
    if not receipts:
        sys.stdout.write("no receipts yet\n")
    for r in receipts:
        when = _iso(int(str(r["time_ms"])))
        price = Money(int(str(r["amount_minor"])), str(r["currency"]))
        sys.stdout.write(
            f"{when}  {r['vendor_id']:<16} {price!s:>12}  item {r['item_id']}  "
            f"coin {r['ecoin_id']} ({r['from_index']}, {r['to_index']}]\n"
        )
    return 0


def _broker_history(args: argparse.Namespace) -> int:
    with _wallet(args) as wallet:
        entries = wallet.broker_history(ecoin_id=args.coin or "", limit=args.limit)
    if args.json:
        for e in entries:
            _emit(e)
        return 0
    if not entries:
        sys.stdout.write("nothing at the broker yet\n")
    for e in entries:
        amount = Money(int(str(e["amount_minor"])), str(e["currency"]))
        where = f"{e['vendor_id']} item {e['item_id']}" if e["vendor_id"] else ""
        sys.stdout.write(
            f"{_iso(int(str(e['time_ms'])))}  {e['kind']:<14} {amount!s:>12}  "
            f"coin {e['ecoin_id']}  {where}\n"
        )
    return 0


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
    with _wallet(args) as wallet:
        result = wallet.read(args.url, args.max_amount)
        _warnings(wallet)
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
            _say(
                f"netpay: paid {price}{source} to {r.vendor_id} for {r.item_id!r} "
                f"(coin {r.ecoin_id}, words ({r.from_index}, {r.to_index}])"
            )
        if result.window_id is not None:
            _say(f"netpay: window: {result.window_words_left} words left")
        _say(f"netpay: balance: {result.balance_words} words left on coin {result.ecoin_id}")
    if result.receipt_error is not None:
        raise result.receipt_error
    if result.status >= 400:
        _say(f"netpay: the server answered HTTP {result.status}")
        return 1
    return 0


def _authorize(args: argparse.Namespace) -> int:
    with _wallet(args) as wallet:
        header = wallet.authorize(args.url, args.max_amount)
        _warnings(wallet)
    sys.stdout.write(header + "\n")
    sys.stdout.flush()
    return 0


def _open_window(args: argparse.Namespace) -> int:
    with _wallet(args) as wallet:
        window = wallet.open_window(args.url, args.units, args.max_amount)
        _warnings(wallet)
        out = window_json(window)
        if args.print_handle:
            out["handle"] = wallet.store.window_handle(window.window_id)
    _emit(out)
    _say(
        f"netpay: opened a window of {window.units} words at {window.vendor_id} "
        f"({Money(window.units * window.unit_value_minor, window.currency)}); "
        f"`netpay wallet read` uses it, `netpay wallet close-window` refunds the rest"
    )
    return 0


def _close_window(args: argparse.Namespace) -> int:
    with _wallet(args) as wallet:
        closed = wallet.close_window(args.url)
        _warnings(wallet)
    _emit(closed.to_json())
    if closed.credit is None:
        _say(f"netpay: the window at {closed.window.vendor_id} was already closed by the vendor")
    else:
        _say(
            f"netpay: closed the window at {closed.window.vendor_id}: "
            f"{closed.credit.refund_units} words credited back"
        )
    return 0


def _windows(args: argparse.Namespace) -> int:
    with _wallet(args) as wallet:
        windows = wallet.windows()
    if args.json:
        for w in windows:
            _emit(window_json(w))
        return 0
    if not windows:
        sys.stdout.write("no windows (netpay wallet open-window URL --units M)\n")
    for w in windows:
        sys.stdout.write(
            f"{w.window_id:>4}  {w.state.value:8} {w.vendor_id:<16} {w.words_left:>4} of "
            f"{w.units:>3} words left  coin {w.ecoin_id} ({w.window_from}, {w.window_top}]"
            f"  expires {_iso(w.expires_at_ms) or '-'}\n"
        )
    return 0


def _bridge(args: argparse.Namespace) -> int:
    caps = BridgeCaps(max_click_minor=args.max_click, max_day_minor=args.max_day)
    stop = install_stop_handlers()
    wallet = _wallet(args)
    try:
        handle = start_bridge(wallet, listen=args.listen, caps=caps, close_wallet=True)
    except BaseException:
        wallet.close()
        raise
    try:
        origins = wallet.store.approved_origins()
        _emit({"bridge": handle.url})
        _say(
            f"netpay: wallet bridge on {handle.url} for {len(origins)} approved origin(s); "
            f"caps {caps.max_click_minor} per click, {caps.max_day_minor} per day and origin"
        )
        if not origins:
            _say("netpay: no origin is approved yet: netpay wallet approve-origin URL")
        stop.wait()
    finally:
        handle.stop()
    return 0


def _optional_cap(value: int | None, name: str) -> int | None:
    return None if value is None else check_cap(value, name)


def _approve_origin(args: argparse.Namespace) -> int:
    origin = normalize_origin(args.url)
    with _wallet(args) as wallet:
        approved = wallet.store.approve_origin(
            origin,
            max_click_minor=_optional_cap(args.max_click, "--max-click"),
            max_day_minor=_optional_cap(args.max_day, "--max-day"),
            now_ms=wallet.clock.now_ms(),
        )
    _emit(approved.to_json())
    _say(f"netpay: pages of {origin} may now ask the wallet bridge to pay their articles")
    return 0


def _revoke_origin(args: argparse.Namespace) -> int:
    origin = normalize_origin(args.url)
    with _wallet(args) as wallet:
        if not wallet.store.revoke_origin(origin):
            raise NotFound(f"{origin} is not an approved origin")
    _emit({"origin": origin, "revoked": True})
    return 0


def _origins(args: argparse.Namespace) -> int:
    with _wallet(args) as wallet:
        day = utc_day(wallet.clock.now_ms())
        rows = [
            (o, wallet.store.bridge_spending(o.origin, day))
            for o in wallet.store.approved_origins()
        ]
    if args.json:
        for o, spent in rows:
            line = o.to_json()
            line["spent_today_minor"] = {cur: minor for cur, (minor, _) in spent.items()}
            _emit(line)
        return 0
    if not rows:
        sys.stdout.write("no approved origins (netpay wallet approve-origin URL)\n")
    for o, spent in rows:
        click = "bridge's" if o.max_click_minor is None else str(o.max_click_minor)
        per_day = "bridge's" if o.max_day_minor is None else str(o.max_day_minor)
        today = ", ".join(f"{Money(m, c)}" for c, (m, _) in sorted(spent.items())) or "nothing"
        sys.stdout.write(f"{o.origin}  max click {click}  max day {per_day}  spent today {today}\n")
    return 0


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
    with _wallet(args) as wallet:
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
            _emit(row)
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
        _say(
            f"netpay: spending limits in {rows[0]['currency']} set; they apply to every "
            "payment with this wallet's coins (read, authorize, open-window, the bridge)"
        )
        if sync_error is not None:
            _say(
                f"netpay: warning: the broker did not take them ({sync_error}); your "
                "server-side coins keep the broker's limits until you set them again"
            )
    return 0


def _autoload_text(a: AutoloadAgreement) -> str:
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
    with _wallet(args) as wallet:
        if args.off:
            shown = [(currency, wallet.autoload_off(currency))]
            _say(f"netpay: auto-load in {currency} is off")
        elif args.below_minor is not None:
            agreement = wallet.set_autoload(
                currency, args.below_minor, args.units, args.unit_value or 1
            )
            shown = [(currency, agreement)]
            _say(f"netpay: auto-load: {_autoload_text(agreement)}")
        elif args.currency is not None:
            one = wallet.store.autoload(args.currency)
            shown = [(args.currency, one if one is not None and one.enabled else None)]
        else:
            shown = [(a.currency, a) for a in wallet.autoload_agreements()]
    if args.json:
        for cur, a in shown:
            _emit(_autoload_json(cur, a))
        return 0
    if not shown:
        sys.stdout.write(
            "no auto-load agreement (netpay wallet autoload --below-minor T --units N)\n"
        )
    for cur, a in shown:
        sys.stdout.write(f"{cur}: {'none' if a is None else _autoload_text(a)}\n")
    return 0


# -- parser -------------------------------------------------------------------


def _parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help_text: str,
    example: str,
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Also accepted after the command; the value before it is the default.
    p.add_argument("--wallet-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=handler)
    return p


def _max_amount(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-amount",
        type=int,
        default=DEFAULT_MAX_AMOUNT_MINOR,
        metavar="A",
        help=f"refuse a price above A minor units (default {DEFAULT_MAX_AMOUNT_MINOR})",
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

    p = _parser(
        cmds,
        "register",
        _register,
        "open a reader account at the broker and log in (keeps a token, never the password)",
        "netpay wallet register --broker 127.0.0.1:7000 --username ann --password-file pw.txt",
    )
    p.add_argument("--broker", required=True, metavar="H:P", help="the broker's gRPC address")
    p.add_argument("--username", required=True, metavar="U")
    p.add_argument(
        "--password-file", required=True, metavar="F", help="its first line is the password"
    )

    p = _parser(
        cmds,
        "login",
        _login,
        "log in again (at the stored broker unless --broker is given)",
        "netpay wallet login --username ann --password-file pw.txt",
    )
    p.add_argument("--broker", metavar="H:P", help="the broker's gRPC address")
    p.add_argument("--username", required=True, metavar="U")
    p.add_argument(
        "--password-file", required=True, metavar="F", help="its first line is the password"
    )

    p = _parser(
        cmds,
        "buy",
        _buy,
        "buy a coin of N words from the broker (client-side, or --server-side: the "
        "broker keeps the chain); prints the coin as JSON",
        "netpay wallet buy --units 200 --unit-value 1 --currency EUR\n"
        "  netpay wallet buy --units 500 --server-side --password-file wallet-pw.txt",
    )
    p.add_argument("--units", type=int, required=True, metavar="N", help="words in the coin")
    p.add_argument(
        "--unit-value", type=int, default=1, metavar="U", help="minor units per word (default 1)"
    )
    p.add_argument("--currency", default="EUR", metavar="C", help="ISO 4217 (default EUR)")
    p.add_argument(
        "--server-side",
        action="store_true",
        help="a server-side wallet: the broker makes and keeps the chain (encrypted); "
        "the wallet stores nothing of it",
    )
    p.add_argument(
        "--password-file",
        metavar="F",
        help="with --server-side: its first line is the new wallet password (8..256 chars)",
    )

    p = _parser(
        cmds,
        "balance",
        _balance,
        "the coins with words and value left, and the bank balance at the broker",
        "netpay wallet balance --json",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")

    p = _parser(
        cmds,
        "history",
        _history,
        "the receipts of every paid click; with --broker, the money history the broker "
        "keeps (purchases, redeemed clicks, window credits, vendor and expiry refunds)",
        "netpay wallet history --json\n  netpay wallet history --broker --limit 20 --json",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    p.add_argument(
        "--broker", action="store_true", help="the broker's history instead of local receipts"
    )
    p.add_argument("--coin", metavar="ID", help="with --broker: one coin only")
    p.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="with --broker: at most N entries (1..1000, default 100)",
    )

    p = _parser(
        cmds,
        "read",
        _read,
        "fetch URL, paying its 402 challenge; the resource goes to stdout, "
        "the receipt and balance to stderr",
        "netpay wallet read http://127.0.0.1:8001/articles/1 --max-amount 10 > article.html",
    )
    p.add_argument("url", metavar="URL")
    _max_amount(p)
    p.add_argument(
        "--json-receipt", action="store_true", help="the receipt as one JSON line on stderr"
    )

    p = _parser(
        cmds,
        "authorize",
        _authorize,
        "print the Authorization header value that pays for URL once (the wallet's index "
        "moves now: an unused header leaves void words, returned after the coin expires)",
        'curl -H "Authorization: $(netpay wallet authorize URL)" URL',
    )
    p.add_argument("url", metavar="URL")
    _max_amount(p)

    p = _parser(
        cmds,
        "open-window",
        _open_window,
        "prepay M words at URL's newspaper in one payment (a cookie-cache window); "
        "`read` then pays that site's clicks from it; prints the window as JSON",
        "netpay wallet open-window http://127.0.0.1:8001/ --units 50",
    )
    p.add_argument("url", metavar="URL", help="an article or any page of the site")
    p.add_argument(
        "--units",
        type=int,
        required=True,
        metavar="M",
        help=f"words to prepay, 1..{MAX_WINDOW_UNITS}",
    )
    _max_amount(p)
    p.add_argument(
        "--print-handle",
        action="store_true",
        help="also print the window's cookie value: a BEARER SECRET that spends the "
        "window's words (anyone holding it can read on your money); kept out of "
        "the output unless asked",
    )

    p = _parser(
        cmds,
        "close-window",
        _close_window,
        "close the wallet's window at URL's newspaper; the vendor's signed credit for "
        "the unused words is verified, stored and printed as JSON",
        "netpay wallet close-window http://127.0.0.1:8001/",
    )
    p.add_argument("url", metavar="URL")

    p = _parser(
        cmds,
        "windows",
        _windows,
        "the windows the wallet opened: state, words left, credit",
        "netpay wallet windows --json",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per window on stdout")

    p = _parser(
        cmds,
        "bridge",
        _bridge,
        "serve the wallet to approved newspaper pages on a loopback address (the browser "
        'bridge); prints {"bridge": URL} when ready, stops on Ctrl-C or SIGTERM',
        "netpay wallet bridge --listen 127.0.0.1:8790 --max-click 50 --max-day 300",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="IP:PORT",
        help=f"a loopback IP address only, port 0 picks one (default {DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--max-click",
        type=int,
        default=DEFAULT_MAX_CLICK_MINOR,
        metavar="A",
        help=f"refuse a price above A minor units (default {DEFAULT_MAX_CLICK_MINOR})",
    )
    p.add_argument(
        "--max-day",
        type=int,
        default=DEFAULT_MAX_DAY_MINOR,
        metavar="A",
        help="refuse a click that takes an origin's spending of the UTC day above A "
        f"minor units (default {DEFAULT_MAX_DAY_MINOR})",
    )

    p = _parser(
        cmds,
        "approve-origin",
        _approve_origin,
        "let the pages of URL's web origin ask the wallet bridge to pay their articles "
        "(again: change its caps); without caps the bridge's apply, with them the lower wins",
        "netpay wallet approve-origin https://news.example --max-click 20 --max-day 200",
    )
    p.add_argument("url", metavar="URL", help="the site (its scheme, host and port count)")
    p.add_argument("--max-click", type=int, metavar="A", help="this site's cap per click")
    p.add_argument("--max-day", type=int, metavar="A", help="this site's cap per UTC day")

    p = _parser(
        cmds,
        "revoke-origin",
        _revoke_origin,
        "stop the wallet bridge paying for the pages of URL's web origin",
        "netpay wallet revoke-origin https://news.example",
    )
    p.add_argument("url", metavar="URL")

    p = _parser(
        cmds,
        "origins",
        _origins,
        "the origins approved for the wallet bridge, their caps and today's spending",
        "netpay wallet origins --json",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per origin on stdout")

    p = _parser(
        cmds,
        "limits",
        _limits,
        "show or set your spending limits per click and per UTC day (per currency, in "
        "minor units; none = no limit); they apply to every payment with this wallet's "
        "coins: read, authorize, open-window (a window counts against the day) and the "
        "bridge. Setting them also sets them at the broker (for your server-side coins); "
        "login and --sync take the broker's (set on the portal) into the wallet.",
        "netpay wallet limits --currency EUR --max-click-minor 50 --max-day-minor 500 --json",
    )
    p.add_argument("--currency", metavar="C", help="ISO 4217 (setting: default EUR; showing: all)")
    p.add_argument(
        "--max-click-minor",
        type=_limit_value,
        default=KEEP,
        metavar="N|none",
        help="refuse a click above N minor units (none: no limit)",
    )
    p.add_argument(
        "--max-day-minor",
        type=_limit_value,
        default=KEEP,
        metavar="N|none",
        help="refuse a payment that takes the UTC day's spending above N (none: no limit)",
    )
    p.add_argument(
        "--sync",
        action="store_true",
        help="first take the limits kept at the broker (set on the portal or by another wallet)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per currency on stdout")

    p = _parser(
        cmds,
        "autoload",
        _autoload,
        "a standing agreement: when a payment leaves your usable coins in a currency "
        "below T minor units, buy a new coin of N words from your bank account at the "
        "broker (at most one per payment; a failure never fails the payment and is tried "
        "again after the next one). Without terms: show the agreements.",
        "netpay wallet autoload --currency EUR --below-minor 100 --units 500 --json\n"
        "  netpay wallet autoload --currency EUR --off",
    )
    p.add_argument("--currency", metavar="C", help="ISO 4217 (setting: default EUR; showing: all)")
    p.add_argument("--below-minor", type=int, metavar="T", help="the threshold, minor units")
    p.add_argument("--units", type=int, metavar="N", help="words in the coin to buy")
    p.add_argument("--unit-value", type=int, metavar="U", help="minor units per word (default 1)")
    p.add_argument("--off", action="store_true", help="end the agreement")
    p.add_argument("--json", action="store_true", help="one JSON object per agreement on stdout")
