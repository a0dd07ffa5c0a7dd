"""Cookie-cache windows: open one, close it for its credit, list them.

Use cases: ``open_window`` (prepay M words at a vendor in one payment; the
handle the vendor sets as a cookie is kept in the wallet file only),
``authorize_window`` (the header only, for the browser bridge, whose page
gets the cookie), ``close_window`` (the vendor's signed WindowCredit for
the unused words is verified and kept), ``windows`` and ``open_windows``.
Clicks paid from a window are in :mod:`ewallet_client.wallet.window_clicks`.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from google.protobuf.message import DecodeError

from ewallet_client import http
from ewallet_client.domain import WindowEvent, WindowState, check_window_credit, origin_of
from ewallet_client.store import BridgeCharge, WindowRequest, WindowView, ranges
from ewallet_client.wallet.autoload import Autoload
from ewallet_client.wallet.coins import Coins
from ewallet_client.wallet.issuing import BUSY_RETRIES, BUSY_WAIT_CAP_S, Issuer, resyncable
from ewallet_client.wallet.limits import Limits
from ewallet_client.wallet.ports import WalletPorts, log
from ewallet_client.wallet.quotes import JSON, Quote, Quotes
from ewallet_client.wallet.results import WindowAuthorization, WindowCreditView
from ewallet_client.wallet.window_clicks import WINDOW_COOKIE
from netpay.encoding import b64url_decode
from netpay.envelope import open_envelope
from netpay.errors import (
    CoinBusy,
    InvalidArgument,
    Malformed,
    NetPayError,
    NotFound,
    PreconditionFailed,
    SignatureInvalid,
)
from netpay.limits import DEFAULT_LIMITS
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "MAX_WINDOW_UNITS",
    "WINDOW_CLOSE_PATH",
    "WINDOW_PATH",
    "Windows",
    "window_url",
]

WINDOW_PATH = "/netpay/window"
WINDOW_CLOSE_PATH = "/netpay/window/close"
MAX_WINDOW_UNITS = DEFAULT_LIMITS.max_window_units
_HANDLE_BYTES = 32
_MAX_WINDOW_JSON_BYTES = 16 * 1024
_MAX_INT64 = 2**63 - 1
_OPEN_OR_UNUSABLE = (WindowState.OPEN, WindowState.UNUSABLE)


def window_url(url: str, *, close: bool = False) -> str:
    """``<scheme>://<host:port of url>/netpay/window[/close]``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{WINDOW_CLOSE_PATH if close else WINDOW_PATH}"


def _int_field(obj: dict[str, object], name: str, low: int = 0, high: int = _MAX_INT64) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Malformed(f"the vendor's window has no valid {name!r}")
    return value


def _window_json(resp: http.HttpResponse, what: str) -> dict[str, object]:
    if len(resp.body) > _MAX_WINDOW_JSON_BYTES:
        raise Malformed(f"the vendor's {what} is larger than {_MAX_WINDOW_JSON_BYTES} bytes")
    try:
        obj = json.loads(resp.body)
    except ValueError:
        raise Malformed(f"the vendor's {what} is not JSON") from None
    if not isinstance(obj, dict):
        raise Malformed(f"the vendor's {what} is not a JSON object")
    return obj


def _check_units(units: int) -> None:
    if isinstance(units, bool) or not 1 <= units <= MAX_WINDOW_UNITS:
        raise InvalidArgument(f"a window is 1..{MAX_WINDOW_UNITS} words")


class Windows:
    """The wallet's windows at vendors."""

    def __init__(
        self,
        ports: WalletPorts,
        quotes: Quotes,
        issuer: Issuer,
        limits: Limits,
        coins: Coins,
        autoload: Autoload,
    ) -> None:
        self._ports = ports
        self._uow = ports.uow
        self._quotes = quotes
        self._issuer = issuer
        self._limits = limits
        self._coins = coins
        self._autoload = autoload

    def _quote(self, url: str, max_amount_minor: int) -> Quote:
        """The vendor behind ``url`` and a price: the URL's 402, else /netpay/window's."""
        session = self._ports.http
        first = http.get(session, url, {"Accept": JSON})
        if first.status != 402:
            first = http.post(session, window_url(url), {"Accept": JSON})
            if first.status != 402:
                raise PreconditionFailed(
                    f"{origin_of(url)} asks for no payment and offers no window "
                    f"(HTTP {first.status})"
                )
        return self._quotes.quote(url, first, max_amount_minor)

    def authorize_window(
        self,
        url: str,
        units: int,
        max_amount_minor: int,
        *,
        charge: BridgeCharge | None = None,
    ) -> WindowAuthorization:
        """The header that opens a window of ``units`` words at ``url``'s vendor.

        The coin's index moves by ``units`` now (one store transaction, as
        for a click). The caller POSTs the header to ``window_url``. With
        ``charge`` (the browser bridge) ``units`` times the unit value counts
        against the origin's daily cap in that transaction.
        """
        self._ports.notes.begin()
        auth = self._authorize(url, units, max_amount_minor, charge=charge, record=False)
        self._autoload.after_payment(auth.currency)
        return auth

    def _authorize(
        self,
        url: str,
        units: int,
        max_amount_minor: int,
        *,
        charge: BridgeCharge | None,
        record: bool,
        quote: Quote | None = None,
        spend: bool = True,
    ) -> WindowAuthorization:
        _check_units(units)
        quote = quote or self._quote(url, max_amount_minor)
        ch = quote.challenge
        # The window's clicks will cost this price each: within the click limit.
        self._limits.check_click(ch)
        alloc = self._issuer.allocate(
            ch,
            url,
            charge=charge,
            window=WindowRequest(units, origin_of(url) if record else None),
            spend=spend,
        )
        return WindowAuthorization(
            header=self._issuer.header(alloc, window_units=units),
            url=url,
            window_url=window_url(url),
            vendor_id=ch.realm,
            web_origin=quote.certificate.web_origin,
            units=units,
            amount_minor=alloc.amount_minor,
            currency=ch.currency,
            price_minor=ch.amount_minor,
            ecoin_id=alloc.coin.ecoin_id,
            from_index=alloc.prev,
            to_index=alloc.index,
            words_left=alloc.coin.n - alloc.index,
            window_id=alloc.window_id,
        )

    def open_window(self, url: str, units: int, max_amount_minor: int) -> WindowView:
        """Prepay ``units`` words at ``url``'s vendor; clicks there then use the window.

        A window already open at that vendor is closed first (its credit
        stored), so the wallet holds at most one per vendor. The handle the
        vendor sets as a cookie is kept in the wallet store (0600) only.
        """
        self._ports.notes.begin()
        _check_units(units)
        origin = origin_of(url)
        quote = self._quote(url, max_amount_minor)
        # Refuse a price above the click limit before closing the old window.
        self._limits.check_click(quote.challenge)
        for old in self._at(origin):
            self._close(old, url)
        auth = self._authorize(url, units, max_amount_minor, charge=None, record=True, quote=quote)
        headers_issued = 1
        busy_retries = 0
        while True:
            resp = self._send(auth)
            if resp.status == 200:
                opened = self._opened(quote, auth, resp)
                self._autoload.after_payment(auth.currency)
                return opened
            err = http.error_from_response(resp)
            if isinstance(err, CoinBusy) and busy_retries < BUSY_RETRIES:
                busy_retries += 1
                self._ports.sleep(http.retry_after_s(resp, BUSY_WAIT_CAP_S))
                continue  # the same header: nothing was accepted
            self._failed(auth)
            if not resyncable(err, headers_issued):
                raise err
            self._coins.resync(auth.ecoin_id, err)
            # The same window: its amount was counted with the first header.
            auth = self._authorize(
                url, units, max_amount_minor, charge=None, record=True, quote=quote, spend=False
            )
            headers_issued += 1

    def _send(self, auth: WindowAuthorization) -> http.HttpResponse:
        """POST the header to the vendor's window URL (a transport failure fails the window)."""
        assert auth.window_id is not None
        try:
            return http.post(
                self._ports.http, auth.window_url, {"Accept": JSON, "Authorization": auth.header}
            )
        except NetPayError:
            self._failed(auth)
            raise

    def _opened(
        self, quote: Quote, auth: WindowAuthorization, resp: http.HttpResponse
    ) -> WindowView:
        try:
            return self._accepted(quote, auth, resp)
        except NetPayError:
            self._failed(auth)
            raise

    def _failed(self, auth: WindowAuthorization) -> None:
        assert auth.window_id is not None
        self._change(auth.window_id, WindowEvent.REFUSED)

    def _change(
        self,
        window_id: int,
        event: WindowEvent,
        *,
        credit: pb.WindowCredit | None = None,
        credit_envelope: bytes | None = None,
    ) -> WindowView:
        with self._uow() as unit:
            view = unit.windows.change(
                window_id,
                event,
                now_ms=self._ports.clock.now_ms(),
                credit=credit,
                credit_envelope=credit_envelope,
            )
            unit.commit()
            return view

    def _accepted(
        self, quote: Quote, auth: WindowAuthorization, resp: http.HttpResponse
    ) -> WindowView:
        """Check the vendor's window against the header; keep its handle."""
        assert auth.window_id is not None
        obj = _window_json(resp, "window")
        coin = self._coins.coin(auth.ecoin_id)
        problems = []
        if obj.get("vendor_id") != auth.vendor_id:
            problems.append("vendor")
        if obj.get("ecoin_id") != auth.ecoin_id:
            problems.append("ecoin id")
        if _int_field(obj, "window_from") != auth.from_index:
            problems.append("window_from")
        if _int_field(obj, "window_top") != auth.to_index:
            problems.append("window_top")
        if _int_field(obj, "units") != auth.units:
            problems.append("units")
        if _int_field(obj, "unit_value") != coin.unit_value_minor:
            problems.append("unit value")
        if obj.get("currency") != coin.currency:
            problems.append("currency")
        words_left = _int_field(obj, "words_left", 0, auth.units)
        epoch = _int_field(obj, "epoch")
        expires_at_ms = _int_field(obj, "expires_at_ms")
        if expires_at_ms <= self._ports.clock.now_ms():
            problems.append("expiry")
        if problems:
            raise SignatureInvalid(
                "the vendor's window does not match the header: " + ", ".join(problems)
            )
        handle = _handle(resp)
        with self._uow() as unit:
            view = ranges.window_opened(
                unit,
                auth.window_id,
                epoch=epoch,
                expires_at_ms=expires_at_ms,
                handle=handle,
                consumed_index=auth.to_index - words_left,
            )
            unit.commit()
        log.info(
            "opened a window of %d words at %s (coin %s, words (%d, %d])",
            auth.units,
            auth.vendor_id,
            auth.ecoin_id,
            auth.from_index,
            auth.to_index,
        )
        return view

    def close_window(self, url: str) -> WindowCreditView:
        """Close the wallet's window at ``url``'s vendor; the WindowCredit is verified and kept."""
        self._ports.notes.warnings = []
        origin = origin_of(url)
        found = self._at(origin)
        if not found:
            raise NotFound(f"no open window at {origin}")
        return self._close(found[0], url)

    def _at(self, origin: str) -> list[WindowView]:
        """The windows at ``origin`` a click may still use or the vendor may still credit."""
        with self._uow(read_only=True) as unit:
            return unit.windows.at(origin, states=_OPEN_OR_UNUSABLE)

    def _close(self, window: WindowView, url: str) -> WindowCreditView:
        handle = self.window_handle(window.window_id)
        if handle is None:  # pragma: no cover - open windows always have one
            return WindowCreditView(self._change(window.window_id, WindowEvent.VANISHED), None)
        resp = http.post(
            self._ports.http,
            window_url(url, close=True),
            {"Accept": JSON, "Cookie": f"{WINDOW_COOKIE}={handle}"},
        )
        if resp.status != 200:
            err = http.error_from_response(resp)
            if resp.status in (402, 404, 409, 410):
                self._ports.notes.warn(
                    f"the vendor {window.vendor_id} has no open window for this handle any "
                    f"more ({err.code}): it closed it itself, and its credit goes to the broker"
                )
                return WindowCreditView(self._change(window.window_id, WindowEvent.VANISHED), None)
            raise err
        obj = _window_json(resp, "window credit")
        credit, envelope_bytes = self._credit(window, url, obj)
        view = self._change(
            window.window_id, WindowEvent.CREDITED, credit=credit, credit_envelope=envelope_bytes
        )
        log.info(
            "closed the window at %s: %d words refunded", window.vendor_id, credit.refund_units
        )
        return WindowCreditView(view, credit)

    def _credit(
        self, window: WindowView, url: str, obj: dict[str, object]
    ) -> tuple[pb.WindowCredit, bytes]:
        """The vendor's WindowCredit in ``obj``, signed and matching the window."""
        raw = obj.get("window_credit")
        if not isinstance(raw, str):
            raise Malformed("the vendor's answer has no window_credit")
        envelope_bytes = b64url_decode(raw, max_len=16 * 1024)
        try:
            env = pb.Envelope.FromString(envelope_bytes)
        except DecodeError:
            raise SignatureInvalid("window credit is no Envelope") from None
        quote_cert, cached = self._quotes.certificate(window.vendor_id, url, fresh=False)
        try:
            credit = open_envelope(env, pb.WindowCredit, quote_cert.public_key)
        except SignatureInvalid:
            if not cached:
                raise
            fresh, _ = self._quotes.certificate(window.vendor_id, url, fresh=True)
            credit = open_envelope(env, pb.WindowCredit, fresh.public_key)
        assert window.epoch is not None
        check_window_credit(
            credit,
            vendor_id=window.vendor_id,
            ecoin_id=window.ecoin_id,
            epoch=window.epoch,
            window_from=window.window_from,
            window_top=window.window_top,
            consumed_at_least=self.window(window.window_id).consumed_index,
        )
        refund = obj.get("refund_units")
        if refund is not None and refund != credit.refund_units:
            raise SignatureInvalid("refund_units differs from the signed window credit")
        known = self.window(window.window_id).consumed_index
        if credit.consumed_index > known:
            self._ports.notes.warn(
                f"the vendor counts {credit.consumed_index - known} words consumed from the "
                "window that no receipt in this wallet covers"
            )
        return credit, envelope_bytes

    def window(self, window_id: int) -> WindowView:
        with self._uow(read_only=True) as unit:
            return unit.windows.get(window_id)

    def window_handle(self, window_id: int) -> str | None:
        """The window's cookie value: a bearer secret (None once closed)."""
        with self._uow(read_only=True) as unit:
            return unit.windows.handle(window_id)

    def windows(self) -> list[WindowView]:
        """Every window the wallet opened, oldest first."""
        with self._uow(read_only=True) as unit:
            return unit.windows.all()

    def open_windows(self) -> list[WindowView]:
        """The windows clicks can still use (open, not expired)."""
        now_ms = self._ports.clock.now_ms()
        with self._uow(read_only=True) as unit:
            found = unit.windows.all(states=(WindowState.OPEN,))
        return [w for w in found if w.live(now_ms)]


def _handle(resp: http.HttpResponse) -> str:
    """The window handle the vendor set as a cookie: 32 bytes in base64url."""
    handle = http.set_cookie_value(resp, WINDOW_COOKIE)
    if handle is None:
        raise Malformed(f"the vendor set no {WINDOW_COOKIE} cookie")
    try:
        if len(b64url_decode(handle, max_len=64)) != _HANDLE_BYTES:
            raise Malformed("window handle is not 32 bytes")
    except Malformed:
        raise Malformed(
            f"the vendor's {WINDOW_COOKIE} cookie is not 32 bytes in base64url"
        ) from None
    return handle
