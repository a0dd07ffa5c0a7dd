"""The bridge's rules: where it may listen, which origins count, its caps.

:func:`check_bridge_address` (a loopback IP literal only),
:func:`normalize_origin` (``scheme://host:port``; plain HTTP only on
loopback) and :class:`BridgeCaps` (the bridge's own caps; an approved origin
may set lower ones).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ewallet_client.domain import origin_of
from netpay.browser import BRIDGE_SCRIPT_PATH
from netpay.errors import InvalidArgument
from netpay.spending import DAY_MS, utc_day

__all__ = [
    "BRIDGE_SCRIPT",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_CLICK_MINOR",
    "DEFAULT_MAX_DAY_MINOR",
    "MAX_BODY_BYTES",
    "MAX_CAP_MINOR",
    "MAX_ORIGIN_CHARS",
    "MAX_URL_CHARS",
    "ORIGIN_HEADER_RE",
    "BridgeCaps",
    "check_bridge_address",
    "check_cap",
    "iso_day",
    "normalize_origin",
    "utc_day",
]

# The page-side library (serve it from the newspaper's own origin).
BRIDGE_SCRIPT = BRIDGE_SCRIPT_PATH
DEFAULT_LISTEN = "127.0.0.1:8790"
DEFAULT_MAX_CLICK_MINOR = 100
DEFAULT_MAX_DAY_MINOR = 500
MAX_CAP_MINOR = 2**53
MAX_BODY_BYTES = 4096
MAX_URL_CHARS = 2048
MAX_ORIGIN_CHARS = 300
# An Origin header is scheme://host[:port], nothing after it (RFC 6454).
ORIGIN_HEADER_RE = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


def iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS // 1000, tz=UTC).date().isoformat()


def check_cap(value: int, name: str) -> int:
    if not 1 <= value <= MAX_CAP_MINOR:
        raise InvalidArgument(f"{name} must be 1..{MAX_CAP_MINOR} minor units")
    return value


def check_bridge_address(address: str) -> tuple[str, int]:
    """``ip:port`` on a loopback IP literal (127.0.0.0/8 or ::1); nothing else, ever."""
    if len(address) > 64:
        raise InvalidArgument("listen address too long")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise InvalidArgument(f"listen address must be IP:PORT, got {address[:64]!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidArgument(
            f"the bridge listens on a loopback IP address only (127.0.0.1 or [::1]), not {host!r}"
        ) from None
    if not ip.is_loopback:
        raise InvalidArgument(
            f"the bridge listens on a loopback IP address only (127.0.0.1 or [::1]), not {host}"
        )
    return str(ip), int(port)


def normalize_origin(value: str) -> str:
    """``scheme://host:port`` (lower case, explicit port) of an origin or URL.

    Refuses ``null``, non-http(s) schemes, credentials in the URL, and plain
    HTTP outside loopback (the wallet would never pay there).
    """
    if not value or len(value) > MAX_URL_CHARS:
        raise InvalidArgument("origin missing or too long")
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("an origin carries no user name or password")
    origin = origin_of(value)
    host = (parts.hostname or "").lower()
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme.lower() != "https" and not loopback:
        raise InvalidArgument("plain HTTP origins are refused outside loopback: use https://")
    if len(origin) > MAX_ORIGIN_CHARS:
        raise InvalidArgument(f"origin longer than {MAX_ORIGIN_CHARS} characters")
    return origin


@dataclass(frozen=True)
class BridgeCaps:
    """The bridge's own caps in minor units (an approved origin may set lower ones)."""

    max_click_minor: int = DEFAULT_MAX_CLICK_MINOR
    max_day_minor: int = DEFAULT_MAX_DAY_MINOR

    def __post_init__(self) -> None:
        check_cap(self.max_click_minor, "max click")
        check_cap(self.max_day_minor, "max day")
