"""What every wallet command shares: the wallet it opens, its output, its notes.

Machine output is one JSON object per line on stdout (:func:`emit`); human
messages go to stderr (:func:`say`), the last payment's warnings and
auto-loads too (:func:`print_notes`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from ewallet_client.domain import CoinView
from ewallet_client.store.records import WindowView
from ewallet_client.wallet import Wallet, default_wallet_dir
from netpay.errors import InvalidArgument
from netpay.money import Money

__all__ = [
    "coin_json",
    "emit",
    "iso",
    "open_wallet",
    "print_notes",
    "read_password_file",
    "say",
    "window_json",
]

_MAX_PASSWORD_FILE_BYTES = 4096


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


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def coin_json(coin: CoinView) -> dict[str, object]:
    out = coin.to_json()
    out["expires_at"] = iso(coin.expires_at_ms)
    return out


def window_json(window: WindowView) -> dict[str, object]:
    out = window.to_json()
    out["expires_at"] = iso(window.expires_at_ms)
    return out


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    print(message, file=sys.stderr)


def open_wallet(args: argparse.Namespace) -> Wallet:
    return Wallet(args.wallet_dir or default_wallet_dir())


def print_notes(wallet: Wallet) -> None:
    for w in wallet.warnings:
        say(f"netpay: warning: {w}")
    for a in wallet.autoloads:
        if a.coin is not None:
            say(
                f"netpay: auto-load: bought coin {a.ecoin_id}: "
                f"{Money(a.coin.value_minor, a.currency)}"
            )
        elif a.error is not None:
            say(
                f"netpay: warning: auto-load in {a.currency} failed: {a.error.code}: "
                f"{a.error.detail}; it is tried again after the next payment"
            )
