"""Paying for a click: read a paid URL, or hand out the header that pays it.

Use cases: ``read`` (GET the URL, pay its 402 challenge from an open window
or with a fresh header, re-send after ``coin_busy``, resync after
``already_spent``/``wrong_amount`` when the vendor's ``seen`` is that of the
coin's own word at its index, verify and keep the receipt) and
``authorize_payment`` (the header only: for ``netpay wallet authorize`` and
the browser bridge, whose charge against an approved origin's caps is
checked in the transaction that moves the index). Every payment runs the
auto-load agreement afterwards.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from ewallet_client import http
from ewallet_client.domain import check_receipt
from ewallet_client.store import Allocation, BridgeCharge, ranges
from ewallet_client.wallet.autoload import Autoload
from ewallet_client.wallet.coins import Coins
from ewallet_client.wallet.issuing import BUSY_RETRIES, BUSY_WAIT_CAP_S, Issuer, resyncable
from ewallet_client.wallet.limits import Limits
from ewallet_client.wallet.ports import WalletPorts
from ewallet_client.wallet.quotes import (
    BALANCE_HEADER,
    JSON,
    Quote,
    Quotes,
    header_int,
    receipt_bytes,
)
from ewallet_client.wallet.results import Authorization, ReadResult
from ewallet_client.wallet.window_clicks import WindowClicks
from netpay.errors import CoinBusy, NetPayError, PreconditionFailed, SignatureInvalid
from netpay.v1 import statements_pb2 as pb

__all__ = ["DEFAULT_MAX_AMOUNT_MINOR", "Paying"]

DEFAULT_MAX_AMOUNT_MINOR = 100


class Paying:
    """Per-click payments."""

    def __init__(
        self,
        ports: WalletPorts,
        quotes: Quotes,
        issuer: Issuer,
        limits: Limits,
        coins: Coins,
        autoload: Autoload,
        window_clicks: WindowClicks,
    ) -> None:
        self._ports = ports
        self._quotes = quotes
        self._issuer = issuer
        self._limits = limits
        self._coins = coins
        self._autoload = autoload
        self._window_clicks = window_clicks

    def authorize_payment(
        self,
        url: str,
        max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR,
        *,
        charge: BridgeCharge | None = None,
    ) -> Authorization:
        """The header that pays ``url`` once, and what it pays.

        The wallet's index moves now: a header that is never used leaves a
        gap of void words (returned to the reader after the coin expires).
        With ``charge`` (the browser bridge), the amount also counts against
        an approved origin's caps, checked in the transaction that moves the
        index: a refused charge moves nothing.
        """
        self._ports.notes.begin()
        first = http.get(self._ports.http, url, {"Accept": JSON})
        if first.status != 402:
            raise PreconditionFailed(f"{url[:200]} asks for no payment (HTTP {first.status})")
        quote = self._quotes.quote(url, first, max_amount_minor)
        alloc, header = self._issuer.issue(quote, charge=charge)
        ch = quote.challenge
        self._autoload.after_payment(ch.currency)
        return Authorization(
            header=header,
            url=url,
            vendor_id=ch.realm,
            web_origin=quote.certificate.web_origin,
            amount_minor=ch.amount_minor,
            currency=ch.currency,
            ecoin_id=alloc.coin.ecoin_id,
            from_index=alloc.prev,
            to_index=alloc.index,
            words_left=alloc.coin.n - alloc.index,
        )

    def read(self, url: str, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR) -> ReadResult:
        """GET ``url``, paying its 402 challenge (at most ``max_amount_minor``)."""
        self._ports.notes.begin()
        first = http.get(self._ports.http, url, {"Accept": JSON})
        if first.status != 402:
            return ReadResult(url, first.status, first.body, first.content_type)
        quote = self._quotes.quote(url, first, max_amount_minor)
        self._limits.check_click(quote.challenge)
        window = self._window_clicks.usable(quote)
        if window is not None:
            from_window = self._window_clicks.read(quote, window)
            if from_window is not None:
                self._autoload.after_payment(quote.challenge.currency)
                return from_window
        result = self._pay(quote)
        self._autoload.after_payment(quote.challenge.currency)
        return result

    def _pay(self, quote: Quote) -> ReadResult:
        """Send fresh headers for the click until the vendor accepts one (or refuses for good)."""
        alloc, header = self._issuer.issue(quote)
        headers_issued = 1
        busy_retries = 0
        while True:
            resp = http.get(self._ports.http, quote.url, {"Accept": JSON, "Authorization": header})
            if resp.status == 200:
                return self._accepted(quote, alloc, resp)
            err = http.error_from_response(resp)
            if isinstance(err, CoinBusy) and busy_retries < BUSY_RETRIES:
                busy_retries += 1
                self._ports.sleep(http.retry_after_s(resp, BUSY_WAIT_CAP_S))
                continue  # the same header: nothing was accepted
            if resyncable(err, headers_issued):
                self._coins.resync(alloc.coin.ecoin_id, err)
                # The same click: its price was counted with the first header.
                alloc, header = self._issuer.issue(quote, spend=False)
                headers_issued += 1
                continue
            raise err

    def _accepted(self, quote: Quote, alloc: Allocation, resp: http.HttpResponse) -> ReadResult:
        ch = quote.challenge
        receipt: pb.Receipt | None = None
        receipt_error: NetPayError | None = None
        try:
            raw = receipt_bytes(resp)
            receipt = self._verify_receipt(quote, alloc, pb.Envelope.FromString(raw))
            with self._ports.uow() as unit:
                ranges.record_receipt(
                    unit, receipt, envelope=raw, url=quote.url, now_ms=self._ports.clock.now_ms()
                )
                unit.commit()
        except (NetPayError, DecodeError) as exc:
            receipt = None
            receipt_error = (
                exc if isinstance(exc, NetPayError) else SignatureInvalid("receipt is no Envelope")
            )
            self._ports.notes.warn(f"the vendor's receipt is not valid: {receipt_error.detail}")
        coin = self._coins.coin(alloc.coin.ecoin_id)
        return ReadResult(
            url=quote.url,
            status=resp.status,
            body=resp.body,
            content_type=resp.content_type,
            amount_paid_minor=ch.amount_minor,
            currency=ch.currency,
            receipt=receipt,
            receipt_error=receipt_error,
            ecoin_id=coin.ecoin_id,
            balance_words=coin.words_left,
            vendor_balance_words=header_int(resp, BALANCE_HEADER),
            warnings=tuple(self._ports.notes.warnings),
        )

    def _verify_receipt(self, quote: Quote, alloc: Allocation, env: pb.Envelope) -> pb.Receipt:
        receipt = self._quotes.open_receipt(quote, env)
        check_receipt(
            receipt,
            vendor_id=quote.challenge.realm,
            ecoin_id=alloc.coin.ecoin_id,
            from_index=alloc.prev,
            to_index=alloc.index,
            amount_minor=quote.challenge.amount_minor,
            currency=quote.challenge.currency,
        )
        return receipt
