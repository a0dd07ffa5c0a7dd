"""A click paid from an open window: the cookie, no Authorization header.

Use case: the part of ``read`` that pays from a window
(:meth:`WindowClicks.usable` finds one at the URL's vendor with enough
words; :meth:`WindowClicks.read` sends the handle and checks the receipt
inside the window). A 402 means the vendor will not pay this click from the
window: it is marked unusable and the caller pays per click.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from ewallet_client import http
from ewallet_client.domain import WindowEvent, WindowState, check_window_receipt, origin_of
from ewallet_client.store import WindowView, ranges
from ewallet_client.wallet.ports import WalletPorts
from ewallet_client.wallet.quotes import (
    BALANCE_HEADER,
    JSON,
    Quote,
    Quotes,
    header_int,
    receipt_bytes,
)
from ewallet_client.wallet.results import ReadResult
from netpay.errors import NetPayError, SignatureInvalid
from netpay.v1 import statements_pb2 as pb

__all__ = ["WINDOW_COOKIE", "WindowClicks"]

WINDOW_COOKIE = "netpay_window"


class WindowClicks:
    """Clicks paid from the wallet's open windows."""

    def __init__(self, ports: WalletPorts, quotes: Quotes) -> None:
        self._ports = ports
        self._uow = ports.uow
        self._quotes = quotes

    def usable(self, quote: Quote) -> WindowView | None:
        """An open window at the URL's vendor with enough words for this price."""
        ch = quote.challenge
        now_ms = self._ports.clock.now_ms()
        skew_ms = self._ports.skew_ms()
        with self._uow(read_only=True) as unit:
            found = unit.windows.at(origin_of(quote.url), states=(WindowState.OPEN,))
        for w in found:
            if (
                w.vendor_id == ch.realm
                and w.currency == ch.currency
                and w.live(now_ms + skew_ms)
                and ch.amount_minor % w.unit_value_minor == 0
                and w.words_left >= ch.amount_minor // w.unit_value_minor
            ):
                return w
        return None

    def read(self, quote: Quote, window: WindowView) -> ReadResult | None:
        """The click paid from ``window`` (cookie, no Authorization); None: pay per click."""
        with self._uow(read_only=True) as unit:
            handle = unit.windows.handle(window.window_id)
        if handle is None:
            return None
        resp = http.get(
            self._ports.http,
            quote.url,
            {"Accept": JSON, "Cookie": f"{WINDOW_COOKIE}={handle}"},
        )
        if resp.status == 402:
            self._change(window.window_id, WindowEvent.CLICK_REFUSED)
            err = http.error_from_response(resp)
            self._ports.notes.warn(
                f"the window at {window.vendor_id} is no longer usable ({err.detail}); "
                "paying per click"
            )
            return None
        if resp.status != 200:
            raise http.error_from_response(resp)
        receipt, receipt_error = self._receipt(quote, window, resp)
        ch = quote.challenge
        with self._uow(read_only=True) as unit:
            after = unit.windows.get(window.window_id)
        with self._uow() as unit:
            coin = unit.coins.get(window.ecoin_id)
        return ReadResult(
            url=quote.url,
            status=resp.status,
            body=resp.body,
            content_type=resp.content_type,
            amount_paid_minor=receipt.amount_minor if receipt is not None else ch.amount_minor,
            currency=ch.currency,
            receipt=receipt,
            receipt_error=receipt_error,
            ecoin_id=coin.ecoin_id,
            balance_words=coin.words_left,
            vendor_balance_words=header_int(resp, BALANCE_HEADER),
            warnings=tuple(self._ports.notes.warnings),
            window_id=window.window_id,
            window_words_left=after.words_left,
        )

    def _receipt(
        self, quote: Quote, window: WindowView, resp: http.HttpResponse
    ) -> tuple[pb.Receipt | None, NetPayError | None]:
        """The window receipt, checked and kept; or why not (the resource still counts)."""
        try:
            raw = receipt_bytes(resp)
            receipt = self._quotes.open_receipt(quote, pb.Envelope.FromString(raw))
            assert window.epoch is not None
            check_window_receipt(
                receipt,
                vendor_id=window.vendor_id,
                ecoin_id=window.ecoin_id,
                epoch=window.epoch,
                window_from=window.window_from,
                window_top=window.window_top,
                unit_value_minor=window.unit_value_minor,
                currency=window.currency,
                max_amount_minor=quote.challenge.amount_minor,
            )
            with self._uow() as unit:
                ranges.record_receipt(
                    unit,
                    receipt,
                    envelope=raw,
                    url=quote.url,
                    now_ms=self._ports.clock.now_ms(),
                    window_id=window.window_id,
                )
                unit.commit()
        except (NetPayError, DecodeError) as exc:
            receipt_error = (
                exc if isinstance(exc, NetPayError) else SignatureInvalid("receipt is no Envelope")
            )
            self._ports.notes.warn(
                f"the vendor's window receipt is not valid: {receipt_error.detail}"
            )
            return None, receipt_error
        return receipt, None

    def _change(self, window_id: int, event: WindowEvent) -> None:
        with self._uow() as unit:
            unit.windows.change(window_id, event, now_ms=self._ports.clock.now_ms())
            unit.commit()
