"""The browser bridge: the client-side wallet served to newspaper pages on loopback.

``netpay wallet bridge`` listens on a loopback IP address only. A newspaper
page's JavaScript (``netpay/static/netpay-bridge.js``) asks it for the
``Authorization`` header that pays one article, then fetches the article
itself, so the receipt and the balance go to the page.

Who may ask (every rule refuses before anything moves):

* the ``Host`` header must be the bridge's own ``ip:port`` (a DNS-rebinding
  page reaches the bridge under its own host name and is refused);
* the ``Origin`` header must be present and one the reader approved
  (``netpay wallet approve-origin``);
* the article URL must have that same origin, and the broker's certificate
  for the vendor that the URL's challenge names must certify it (the
  wallet's own check: the vendor certificate's web origin == the URL's);
* a POST must be ``Content-Type: application/json`` (a cross-site form
  cannot send that without a CORS preflight, which only approved origins
  pass), at most ``MAX_BODY_BYTES``, with a URL of at most ``MAX_URL_CHARS``;
* the price must be within the per-click cap and the origin's spending of
  the UTC day within the daily cap, checked in the store transaction that
  moves the coin's index (:meth:`ewallet_client.store.WalletStore.allocate`);
  the reader's own spending limits (``netpay wallet limits``) apply in that
  same transaction, on top of the bridge's caps.

A payment through the bridge runs the wallet's auto-load agreement like any
other (its outcome is logged; a failure never fails the payment).

``POST /v1/window`` (``{"url", "units"}``) does the same for a cookie-cache
window of ``units`` words (1..``MAX_WINDOW_UNITS``): the price the URL's
challenge names must be within the per-click cap, and units times the coin's
unit value counts against the daily cap in the transaction that moves the
index. The page then POSTs the header to ``window_url`` itself, so the
browser — not the wallet — receives the window's cookie.

CORS headers (``Access-Control-Allow-Origin: <origin>``, never ``*``) go
to approved origins only, so another site's script cannot even read an answer.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ewallet_client.domain import origin_of
from ewallet_client.store import ApprovedOrigin, BridgeCharge, effective_caps
from ewallet_client.wallet import MAX_WINDOW_UNITS, Authorization, Wallet, WindowAuthorization
from netpay.browser import BRIDGE_SCRIPT_PATH
from netpay.errors import InvalidArgument, NetPayError, PermissionDenied
from netpay.spending import DAY_MS, utc_day

__all__ = [
    "BRIDGE_SCRIPT",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_CLICK_MINOR",
    "DEFAULT_MAX_DAY_MINOR",
    "MAX_BODY_BYTES",
    "MAX_URL_CHARS",
    "Bridge",
    "BridgeApi",
    "BridgeCaps",
    "BridgeHandle",
    "check_bridge_address",
    "check_cap",
    "create_app",
    "normalize_origin",
    "start_bridge",
    "utc_day",
]

log = logging.getLogger(__name__)
_Issued = TypeVar("_Issued", Authorization, WindowAuthorization)

# The page-side library (serve it from the newspaper's own origin).
BRIDGE_SCRIPT = BRIDGE_SCRIPT_PATH
DEFAULT_LISTEN = "127.0.0.1:8790"
DEFAULT_MAX_CLICK_MINOR = 100
DEFAULT_MAX_DAY_MINOR = 500
MAX_CAP_MINOR = 2**53
MAX_BODY_BYTES = 4096
MAX_URL_CHARS = 2048
MAX_ORIGIN_CHARS = 300
_JSON = "application/json"
# An Origin header is scheme://host[:port], nothing after it (RFC 6454).
_ORIGIN_HEADER_RE = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


def _iso_day(day: int) -> str:
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


class BridgeApi(Protocol):
    """What the web layer needs (the tests put a fake behind the same app)."""

    def approved(self, origin: str) -> ApprovedOrigin | None: ...

    def authorize(self, origin: str, url: str) -> dict[str, object]: ...

    def status(self, origin: str) -> dict[str, object]: ...

    def window(self, origin: str, url: str, units: int) -> dict[str, object]: ...


class Bridge:
    """The bridge's use cases over one :class:`Wallet`.

    The wallet object is not shared between threads: one authorization runs
    at a time in a bridge. The caps do not rely on that — they are checked in
    the store transaction, so a second bridge or the CLI on the same wallet
    directory cannot slip under them either.
    """

    def __init__(self, wallet: Wallet, caps: BridgeCaps | None = None) -> None:
        self.wallet = wallet
        self.caps = caps or BridgeCaps()
        self._lock = threading.Lock()

    def approved(self, origin: str) -> ApprovedOrigin | None:
        return self.wallet.store.approved_origin(origin)

    def _caps(self, approved: ApprovedOrigin) -> tuple[int, int]:
        return effective_caps(
            approved,
            max_click_minor=self.caps.max_click_minor,
            max_day_minor=self.caps.max_day_minor,
        )

    def _check(self, origin: str, url: str) -> tuple[int, BridgeCharge]:
        """The per-click cap and the charge for a page of ``origin`` asking about ``url``."""
        if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL_CHARS:
            raise InvalidArgument(f"url must be a string of 1..{MAX_URL_CHARS} characters")
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise InvalidArgument("the article URL carries a user name or password")
        if origin_of(url) != origin:
            raise PermissionDenied(
                f"a page of {origin} may only pay for its own site's articles, "
                f"not for {origin_of(url)}"
            )
        approved = self.approved(origin)
        if approved is None:
            raise PermissionDenied(f"{origin} is not an origin this wallet approved")
        click_cap, _ = self._caps(approved)
        charge = BridgeCharge(
            origin=origin,
            day=utc_day(self.wallet.clock.now_ms()),
            max_click_minor=self.caps.max_click_minor,
            max_day_minor=self.caps.max_day_minor,
        )
        return click_cap, charge

    def _issued(self, origin: str, issue: Callable[[], _Issued]) -> _Issued:
        """Run one wallet authorisation (one at a time) and log its warnings."""
        with self._lock:
            auth = issue()
            warnings = list(self.wallet.warnings)
            autoloads = list(self.wallet.autoloads)
        # The wallet paid only the certified origin, which is the URL's, which is the page's.
        assert origin_of(auth.web_origin) == origin
        for w in warnings:
            log.warning("%s", w)
        for a in autoloads:
            if a.error is None:
                log.info("auto-load: bought coin %s in %s", a.ecoin_id, a.currency)
            else:
                log.warning(
                    "auto-load in %s failed (%s: %s); retried after the next payment",
                    a.currency,
                    a.error.code,
                    a.error.detail,
                )
        return auth

    def window(self, origin: str, url: str, units: int) -> dict[str, object]:
        """The header that opens a window of ``units`` words at ``url``'s vendor."""
        if isinstance(units, bool) or not isinstance(units, int):
            raise InvalidArgument("units must be an integer")
        if not 1 <= units <= MAX_WINDOW_UNITS:
            raise InvalidArgument(f"a window is 1..{MAX_WINDOW_UNITS} words")
        click_cap, charge = self._check(origin, url)
        auth = self._issued(
            origin, lambda: self.wallet.authorize_window(url, units, click_cap, charge=charge)
        )
        log.info(
            "authorised a window of %d words (%d %s) at %s for %s (coin %s, words (%d, %d])",
            auth.units,
            auth.amount_minor,
            auth.currency,
            auth.vendor_id,
            origin,
            auth.ecoin_id,
            auth.from_index,
            auth.to_index,
        )
        return {
            "authorization": auth.header,
            "window_url": auth.window_url,
            "units": auth.units,
            "amount": auth.amount_minor,
            "currency": auth.currency,
            "vendor_id": auth.vendor_id,
            "words_left": auth.words_left,
        }

    def authorize(self, origin: str, url: str) -> dict[str, object]:
        """The header that pays ``url`` once, for a page of ``origin`` (approved)."""
        click_cap, charge = self._check(origin, url)
        auth = self._issued(
            origin, lambda: self.wallet.authorize_payment(url, click_cap, charge=charge)
        )
        log.info(
            "authorised %d %s to %s for %s (coin %s, words (%d, %d])",
            auth.amount_minor,
            auth.currency,
            auth.vendor_id,
            origin,
            auth.ecoin_id,
            auth.from_index,
            auth.to_index,
        )
        return {
            "authorization": auth.header,
            "amount": auth.amount_minor,
            "currency": auth.currency,
            "vendor_id": auth.vendor_id,
            "words_left": auth.words_left,
        }

    def status(self, origin: str) -> dict[str, object]:
        """Caps and today's spending for an approved origin; only ``approved: false`` else."""
        approved = self.approved(origin)
        if approved is None:
            return {"approved": False}
        click_cap, day_cap = self._caps(approved)
        day = utc_day(self.wallet.clock.now_ms())
        spent = self.wallet.store.bridge_spending(origin, day)
        wallet_minor: dict[str, int] = {}
        for c in self.wallet.coins():
            if c.state.value == "active":
                wallet_minor[c.currency] = wallet_minor.get(c.currency, 0) + c.value_left_minor
        return {
            "approved": True,
            "origin": origin,
            "max_click_minor": click_cap,
            "max_day_minor": day_cap,
            "day": _iso_day(day),
            "spent_today_minor": {cur: minor for cur, (minor, _) in spent.items()},
            "clicks_today": sum(n for _, n in spent.values()),
            "wallet_minor": wallet_minor,
        }


# -- web ----------------------------------------------------------------------


def _json(status: int, obj: dict[str, object]) -> Response:
    return Response(json.dumps(obj, sort_keys=True), status=status, mimetype=_JSON)


def _error(err: NetPayError, status: int | None = None) -> Response:
    return _json(status or err.http_status, {"error": err.code, "detail": err.detail[:500]})


def create_app(bridge: BridgeApi, *, allowed_hosts: Iterable[str]) -> Flask:
    """The bridge's Flask app; ``allowed_hosts`` are the Host values it answers to."""
    hosts = frozenset(h.lower() for h in allowed_hosts)
    app = Flask("netpay_bridge")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    def caller_origin() -> str | None:
        """The request's approved, normalised origin (or None): computed once."""
        if "origin" not in g:
            raw = request.headers.get("Origin", "")
            origin: str | None = None
            if raw and len(raw) <= MAX_ORIGIN_CHARS and _ORIGIN_HEADER_RE.fullmatch(raw):
                try:
                    candidate = normalize_origin(raw)
                except InvalidArgument:
                    candidate = None
                if candidate is not None and bridge.approved(candidate) is not None:
                    origin = candidate
            g.origin = origin
        result: str | None = g.origin
        return result

    def require_origin() -> str:
        origin = caller_origin()
        if origin is None:
            if not request.headers.get("Origin"):
                raise PermissionDenied("no Origin header: only approved web pages may ask")
            raise PermissionDenied(
                "this site is not approved: the reader runs "
                "`netpay wallet approve-origin <site>` to allow it"
            )
        return origin

    @app.before_request
    def check_host() -> Response | None:
        g.host_ok = request.host.lower() in hosts
        if not g.host_ok:
            return _error(PermissionDenied("wrong Host header: ask the bridge by its IP address"))
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.vary.add("Origin")
        if g.get("host_ok"):
            origin = caller_origin()
            if origin is not None:
                # Echo the browser's own spelling: it compares byte for byte.
                resp.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        return resp

    @app.errorhandler(NetPayError)
    def netpay_error(err: NetPayError) -> Response:
        return _error(err)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        code = err.code or 500
        name = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            code, "invalid_argument"
        )
        return _json(code, {"error": name, "detail": err.description or name})

    @app.errorhandler(Exception)
    def internal(err: Exception) -> Response:
        log.exception("bridge request failed")
        return _json(500, {"error": "internal", "detail": "internal error"})

    def preflight(methods: str) -> Response:
        require_origin()
        resp = Response(status=204)
        resp.headers["Access-Control-Allow-Methods"] = methods
        resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
        resp.headers["Access-Control-Max-Age"] = "600"
        resp.headers["Access-Control-Allow-Private-Network"] = "true"
        return resp

    def json_body() -> dict[str, object] | Response:
        """The request's JSON object, or the error answer to send."""
        if request.mimetype != _JSON:
            return _error(InvalidArgument("Content-Type must be application/json"), 415)
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return _error(InvalidArgument(f"body larger than {MAX_BODY_BYTES} bytes"), 413)
        raw = request.get_data(cache=False)
        if len(raw) > MAX_BODY_BYTES:
            return _error(InvalidArgument(f"body larger than {MAX_BODY_BYTES} bytes"), 413)
        try:
            body = json.loads(raw)
        except ValueError:
            raise InvalidArgument("the body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            raise InvalidArgument('the body must be {"url": "<absolute article URL>", ...}')
        return body

    @app.route("/v1/authorize", methods=["POST", "OPTIONS"], provide_automatic_options=False)
    def authorize() -> Response:
        if request.method == "OPTIONS":
            return preflight("POST")
        origin = require_origin()
        body = json_body()
        if isinstance(body, Response):
            return body
        return _json(200, bridge.authorize(origin, str(body["url"])))

    @app.route("/v1/window", methods=["POST", "OPTIONS"], provide_automatic_options=False)
    def window() -> Response:
        if request.method == "OPTIONS":
            return preflight("POST")
        origin = require_origin()
        body = json_body()
        if isinstance(body, Response):
            return body
        units = body.get("units")
        if not isinstance(units, int) or isinstance(units, bool):
            raise InvalidArgument('the body must be {"url": "<site URL>", "units": <words>}')
        return _json(200, bridge.window(origin, str(body["url"]), units))

    @app.route("/v1/status", methods=["GET", "OPTIONS"], provide_automatic_options=False)
    def status() -> Response:
        if request.method == "OPTIONS":
            return preflight("GET")
        raw = request.headers.get("Origin", "")
        if not raw:
            raise PermissionDenied("no Origin header: only web pages may ask")
        origin = caller_origin()
        if origin is None:
            return _json(200, {"approved": False})
        return _json(200, bridge.status(origin))

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log: the bridge logs what it authorises, not every request line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class BridgeHandle:
    """A running bridge; ``stop()`` shuts it down (idempotent)."""

    url: str
    bridge: Bridge
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _on_stop: Callable[[], None] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        if self._on_stop is not None:
            self._on_stop()


def start_bridge(
    wallet: Wallet,
    *,
    listen: str = DEFAULT_LISTEN,
    caps: BridgeCaps | None = None,
    close_wallet: bool = False,
) -> BridgeHandle:
    """Serve ``wallet`` on ``listen`` (a loopback ``ip:port``; port 0 picks one)."""
    host, port = check_bridge_address(listen)
    bridge = Bridge(wallet, caps)
    # Bind first (port 0), then build the app that knows its own Host.
    server = make_server(
        host, port, Flask("netpay_bridge_boot"), threaded=True, request_handler=_QuietHandler
    )
    bound = server.server_port
    shown = f"[{host}]" if ":" in host else host
    authority = f"{shown}:{bound}"
    hosts = [authority, shown] if bound == 80 else [authority]  # Host omits a default port
    server.app = create_app(bridge, allowed_hosts=hosts)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="netpay-bridge",
        daemon=True,
    )
    thread.start()
    return BridgeHandle(
        url=f"http://{authority}",
        bridge=bridge,
        _server=server,
        _thread=thread,
        _on_stop=wallet.close if close_wallet else None,
    )
