"""The bridge's use cases over one :class:`~ewallet_client.wallet.Wallet`.

``authorize`` (the header that pays one article for a page of an approved
origin), ``window`` (the header that opens a window; the page gets the
cookie) and ``status`` (caps and today's spending for an origin). Every
rule refuses before anything moves; the caps are checked in the wallet's
transaction that moves the index.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from ewallet_client.bridge.rules import MAX_URL_CHARS, BridgeCaps, iso_day
from ewallet_client.domain import origin_of
from ewallet_client.store.records import ApprovedOrigin, BridgeCharge, effective_caps
from ewallet_client.wallet import MAX_WINDOW_UNITS, Authorization, Wallet, WindowAuthorization
from netpay.errors import InvalidArgument, PermissionDenied
from netpay.spending import utc_day

__all__ = ["Bridge", "BridgeApi"]

log = logging.getLogger("ewallet_client.bridge")
_Issued = TypeVar("_Issued", Authorization, WindowAuthorization)


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
        return self.wallet.approved_origin(origin)

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
        spent = self.wallet.bridge_spending(origin, day)
        wallet_minor: dict[str, int] = {}
        for c in self.wallet.coins():
            if c.state.value == "active":
                wallet_minor[c.currency] = wallet_minor.get(c.currency, 0) + c.value_left_minor
        return {
            "approved": True,
            "origin": origin,
            "max_click_minor": click_cap,
            "max_day_minor": day_cap,
            "day": iso_day(day),
            "spent_today_minor": {cur: minor for cur, (minor, _) in spent.items()},
            "clicks_today": sum(n for _, n in spent.values()),
            "wallet_minor": wallet_minor,
        }
