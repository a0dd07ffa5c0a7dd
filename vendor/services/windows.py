"""Cookie-cache windows (protocol.md, "Windows"): open a window, pay clicks
from it, close it.

- :meth:`Windows.open_window`: ``POST /netpay/window``, a payment of ``m``
  words (the spend of a paid click, :meth:`vendor.services.paying.Paying.spend`)
  that opens a window; the coin's older window closes in the same
  transaction.
- :meth:`Windows.pay_from_window`: one click paid from the window behind a
  ``netpay_window`` cookie (a compare-and-set on its consumed index).
- :meth:`Windows.close_window` and :meth:`Windows.close_expired_windows`:
  close with a WindowCredit (credits.py signs it).

:meth:`Windows.commit_window` and :meth:`Windows.try_consume` are shared with
server-side wallets (wallet_sessions.py), whose windows are drawn at the broker.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from netpay.encoding import b64url_decode, b64url_encode
from netpay.errors import (
    CoinBusy,
    Expired,
    LimitExceeded,
    Malformed,
    NotFound,
)
from netpay.header import Credentials, parse_authorization
from netpay.v1 import statements_pb2 as pb
from vendor.domain import (
    CloseReason,
    CoinView,
    Item,
    PaymentPlan,
    VendorCoinState,
    WindowClick,
    WindowState,
    WindowView,
    check_window_click,
    check_window_open,
    lease_is_live,
    window_click_void_from,
    window_expiry_ms,
)
from vendor.services.credits import WindowCredits
from vendor.services.custody import Custody
from vendor.services.paying import Paying, PaymentResult, check_item_id, seal_receipt
from vendor.services.ports import VendorPorts
from vendor.storage import WindowClickRecord, WindowRecord

__all__ = ["WindowClosed", "WindowOpened", "Windows", "handle_digest", "window_result"]

log = logging.getLogger("vendor.services")

_PAY_ATTEMPTS = 4
_HANDLE_BYTES = 32
_HANDLE_CHARS = 43  # base64url of 32 bytes, no padding
_WINDOW_CLOSE_ATTEMPTS = 3
_EXPIRED_PAGE = 1_000


@dataclass(frozen=True)
class WindowOpened:
    """A window opened (or the same window again, for a retried header)."""

    vendor_id: str
    handle: str  # the cookie value: 32 bytes, base64url; only its SHA-256 is stored
    window: WindowView
    replayed: bool

    def max_age_s(self, now_ms: int) -> int:
        """The cookie's Max-Age: the seconds until the window expires."""
        return max(0, -(-(self.window.expires_at_ms - now_ms) // 1000))


@dataclass(frozen=True)
class WindowClosed:
    """A closed window's signed WindowCredit (the same one on every repeat)."""

    credit: pb.Envelope  # Envelope(WindowCredit)
    refund_units: int
    window: WindowView


def handle_digest(handle: str) -> bytes:
    """SHA-256 of a cookie handle; a handle that is not 32 bytes is unknown."""
    if not isinstance(handle, str) or len(handle) != _HANDLE_CHARS:
        raise NotFound("no such window")
    try:
        raw = b64url_decode(handle, max_len=_HANDLE_CHARS)
    except Malformed as err:
        raise NotFound("no such window") from err
    if len(raw) != _HANDLE_BYTES:
        raise NotFound("no such window")
    return hashlib.sha256(raw).digest()


def window_result(
    window: WindowView,
    receipt: bytes,
    to_index: int,
    replayed: bool,
    coin_n: int | None = None,
) -> PaymentResult:
    """A click paid from ``window``; ``coin_n``: a server-side wallet's window (the
    reader's credit then counts the coin's words not yet drawn)."""
    undrawn = 0 if coin_n is None else max(0, coin_n - window.window_top)
    return PaymentResult(
        receipt=receipt,
        words_left=window.words_left + undrawn,
        replayed=replayed,
        ecoin_id=window.ecoin_id,
        to_index=to_index,
        unit_value_minor=window.unit_value_minor,
        currency=window.currency,
        window_words_left=window.words_left,
        window_only=coin_n is None,
    )


class Windows:
    """Open, pay from and close cookie-cache windows."""

    def __init__(
        self, ports: VendorPorts, paying: Paying, custody: Custody, credits: WindowCredits
    ) -> None:
        self._uow = ports.uow
        self._id = ports.identity
        self._limits = ports.limits
        self._clock = ports.clock
        self._paying = paying
        self._custody = custody
        self._credits = credits
        # Window handles are derived from the window payment with a key only this
        # vendor has, so a retried header gets the same handle without storing it.
        self._handle_key = hashlib.sha256(
            b"NetPay-v1 window handle\x00" + ports.identity.key.raw_private()
        ).digest()

    # -- reads -----------------------------------------------------------------

    def windows(self, ecoin_id: str) -> Sequence[WindowView]:
        with self._uow(read_only=True) as unit:
            return unit.windows.of_coin(ecoin_id)

    def window_clicks(self, window_id: int) -> Sequence[WindowClickRecord]:
        with self._uow(read_only=True) as unit:
            return unit.windows.clicks(window_id)

    # -- opening -----------------------------------------------------------------

    def open_window(self, header_value: str, now_ms: int) -> WindowOpened:
        """``POST /netpay/window``: a payment of ``m`` words that opens a window.

        The spend of ``(p, j]`` is the compare-and-set of a paid click; in the
        same transaction the coin's open window (if any) is closed with a
        WindowCredit (reason "closed") and the new window is inserted. The same
        header within retry_ttl_s returns the same window and spends nothing.
        """
        creds = parse_authorization(header_value)
        units = self._window_units(creds)
        handle = self._window_handle(creds)
        digest = hashlib.sha256(b64url_decode(handle)).digest()

        with self._uow(read_only=True) as unit:
            first_look = unit.coins.get(creds.ecoin_id)
        replay = self._window_replay(creds, handle, digest, now_ms)
        if replay is not None:
            return replay

        def plan(coin: CoinView) -> PaymentPlan:
            return check_window_open(coin, creds.prev, creds.index, units, self._limits, now_ms)

        return self._paying.spend(
            creds,
            now_ms,
            first_look,
            plan,
            lambda: self._window_replay(creds, handle, digest, now_ms),
            lambda coin, plan: self._open(creds, handle, digest, now_ms, coin, plan),
        )

    def _window_units(self, creds: Credentials) -> int:
        """``m`` of ``window="m"``, checked before anything is read."""
        if creds.window is None:
            raise Malformed("a window payment needs the window= parameter")
        units = creds.window
        if units < 1:
            raise Malformed("a window is at least one word")
        if units > self._limits.max_window_units:
            raise LimitExceeded(f"a window is at most {self._limits.max_window_units} words")
        if creds.index - creds.prev != units:
            raise Malformed("window= must equal index - prev")
        return units

    def _open(
        self,
        creds: Credentials,
        handle: str,
        digest: bytes,
        now_ms: int,
        coin: CoinView,
        plan: PaymentPlan,
    ) -> WindowOpened | None:
        """Commit the window payment and the new window; ``None`` when it lost."""
        record = WindowRecord(
            ecoin_id=coin.ecoin_id,
            epoch=coin.epoch,
            handle_sha256=digest,
            window_from=plan.prev,
            window_top=plan.index,
            payword=creds.payword,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            opened_at_ms=now_ms,
            expires_at_ms=window_expiry_ms(coin, self._limits, now_ms),
            void_from=coin.index,  # s: (s, prev] is void
        )
        window_id = self.commit_window(coin, record, now_ms)
        if window_id is None:
            return None
        log.info(
            "coin %s epoch %d: window (%d, %d] opened",
            coin.ecoin_id,
            coin.epoch,
            plan.prev,
            plan.index,
        )
        window = WindowView(
            window_id=window_id,
            ecoin_id=record.ecoin_id,
            epoch=record.epoch,
            window_from=record.window_from,
            window_top=record.window_top,
            consumed_index=record.window_from,
            state=WindowState.OPEN,
            opened_at_ms=now_ms,
            expires_at_ms=record.expires_at_ms,
            unit_value_minor=record.unit_value_minor,
            currency=record.currency,
            void_from=record.void_from,
        )
        return WindowOpened(
            vendor_id=self._id.vendor_id, handle=handle, window=window, replayed=False
        )

    def _window_handle(self, creds: Credentials) -> str:
        """The window's cookie handle: HMAC of ``(ecoin, j, w[j])`` under this vendor's key."""
        message = creds.ecoin_bytes + creds.index.to_bytes(4, "big") + creds.payword
        return b64url_encode(hmac.new(self._handle_key, message, hashlib.sha256).digest())

    def _window_replay(
        self, creds: Credentials, handle: str, digest: bytes, now_ms: int
    ) -> WindowOpened | None:
        """The same window header within retry_ttl_s is the same window."""
        with self._uow(read_only=True) as unit:
            found = unit.windows.at_top(creds.ecoin_id, creds.index)
        if found is None:
            return None
        window, payword, stored_digest = found
        if not secrets.compare_digest(payword, creds.payword) or not secrets.compare_digest(
            stored_digest, digest
        ):
            return None
        if window.opened_at_ms < now_ms - self._limits.retry_ttl_s * 1000:
            return None
        if window.window_from != creds.prev:
            return None
        return WindowOpened(self._id.vendor_id, handle, window, replayed=True)

    def commit_window(
        self, coin: CoinView, record: WindowRecord, now_ms: int, *, acknowledged: bool = False
    ) -> int | None:
        """The window payment's compare-and-set, the old window's close and the
        new window, in one transaction; ``None`` when it lost. ``acknowledged``:
        the broker already knows ``w[top]`` (a drawn window)."""
        assert record.void_from == coin.index, "a window's void_from is the index it moves from"
        with self._uow() as unit:
            moved = unit.coins.cas_pay(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                from_index=coin.index,
                to_index=record.window_top,
                payword=record.payword,
                now_ms=now_ms,
            )
            if not moved:
                return None
            old = unit.windows.open_of(coin.ecoin_id)
            if old is not None and not self._credits.close_in(
                unit, old, CloseReason.CLOSED, now_ms
            ):
                return None  # a click moved it meanwhile: roll back, try again
            window_id = unit.windows.add(record)
            if window_id is None:
                return None
            if acknowledged:
                unit.coins.renew_lease(
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    lease_deadline_ms=0,  # never lowers: only the acknowledged index moves
                    acknowledged_index=record.window_top,
                )
            unit.commit()
        if old is not None:
            log.info("coin %s: window %d closed by a newer one", coin.ecoin_id, old.window_id)
        return window_id

    # -- paying from a window --------------------------------------------------------

    def pay_from_window(self, handle: str, item: Item, now_ms: int) -> PaymentResult:
        """One click paid from the window behind the cookie ``handle``.

        The consumption is a compare-and-set on the window's consumed index
        (the coin still HELD in the window's epoch with a live lease),
        committed with the click and its Receipt before this returns. The same
        item again within retry_ttl_s re-serves the original Receipt.

        Raises NotFound (unknown handle), Expired (closed or expired window, or
        the coin no longer held here), Insufficient (the price does not fit),
        WrongAmount / WrongCurrency (the price in the coin's words),
        BrokerUnavailable / Revoked (the lease could not be renewed) or
        CoinBusy (the window kept changing).
        """
        check_item_id(item)
        digest = handle_digest(handle)
        renewed = False
        for _ in range(_PAY_ATTEMPTS):
            since_ms = now_ms - self._limits.retry_ttl_s * 1000
            with self._uow(read_only=True) as unit:
                window = unit.windows.by_handle(digest)
                if window is None:
                    raise NotFound("no such window")
                earlier = unit.windows.click_for(window.window_id, item.item_id, since_ms)
                stored = unit.coins.get(window.ecoin_id) if earlier is None else None
            if earlier is not None:
                return window_result(window, earlier.receipt, earlier.to_index, True)
            click = check_window_click(window, item, now_ms)
            assert stored is not None, "a window implies a coin row"
            coin = stored.view
            if coin.state is not VendorCoinState.HELD or coin.epoch != window.epoch:
                raise Expired("the window's coin is no longer held here")
            if not lease_is_live(coin, now_ms):
                renewed = self._custody.renew_once(coin, renewed)
                continue
            done = self.try_consume(window, click, item, now_ms, None)
            if done is not None:
                return done
            # Lost the compare-and-set (another click, a close, a hand-off): look again.
        raise CoinBusy("the window keeps changing; retry", retry_after_s=1)

    def try_consume(
        self,
        window: WindowView,
        click: WindowClick,
        item: Item,
        now_ms: int,
        coin_n: int | None,
    ) -> PaymentResult | None:
        """Sign the Receipt and commit the consumption of ``click``; ``None``
        when the compare-and-set lost. ``coin_n``: a server-side wallet's
        window (the credit then counts the words not yet drawn)."""
        receipt = seal_receipt(
            self._id,
            ecoin_id=window.ecoin_id,
            epoch=window.epoch,
            void_from=window_click_void_from(window, click),
            from_index=click.from_index,
            to_index=click.to_index,
            item=item,
            now_ms=now_ms,
        )
        record = WindowClickRecord(
            window_id=window.window_id,
            item_id=item.item_id,
            from_index=click.from_index,
            to_index=click.to_index,
            amount_minor=item.price.amount_minor,
            currency=item.price.currency,
            receipt=receipt,
            created_at_ms=now_ms,
        )
        with self._uow() as unit:
            if not unit.windows.cas_consume(
                window_id=window.window_id,
                ecoin_id=window.ecoin_id,
                epoch=window.epoch,
                from_index=record.from_index,
                to_index=record.to_index,
                now_ms=now_ms,
            ) or not unit.windows.add_click(record):
                return None
            unit.commit()
        consumed = replace(window, consumed_index=click.to_index)
        return window_result(consumed, receipt, click.to_index, False, coin_n)

    # -- closing ---------------------------------------------------------------------

    def close_window(self, handle: str, now_ms: int) -> WindowClosed:
        """``POST /netpay/window/close``: close the window, sign its WindowCredit.

        A window already closed (by the wallet, a hand-off, expiry or a newer
        window) answers with the credit it was closed with.
        """
        digest = handle_digest(handle)
        for _ in range(_WINDOW_CLOSE_ATTEMPTS):
            with self._uow(read_only=True) as unit:
                window = unit.windows.by_handle(digest)
            if window is None:
                raise NotFound("no such window")
            if window.state is WindowState.CLOSED:
                assert window.credit is not None, "a closed window has its credit"
                return WindowClosed(
                    pb.Envelope.FromString(window.credit), window.words_left, window
                )
            with self._uow() as unit:
                credit = self._credits.close_in(unit, window, CloseReason.CLOSED, now_ms)
                if credit is not None:
                    unit.commit()
            if credit is not None:
                log.info("window %d of %s closed by the wallet", window.window_id, window.ecoin_id)
                closed = replace(
                    window,
                    state=WindowState.CLOSED,
                    closed_at_ms=now_ms,
                    close_reason=CloseReason.CLOSED,
                    credit=credit.SerializeToString(),
                )
                return WindowClosed(credit, window.words_left, closed)
        raise CoinBusy("the window keeps changing; retry", retry_after_s=1)

    def close_expired_windows(self) -> int:
        """Close every OPEN window past its expiry (reason "expired"); how many closed."""
        now_ms = self._clock.now_ms()
        closed = 0
        while True:
            with self._uow(read_only=True) as unit:
                due = unit.windows.due(now_ms, limit=_EXPIRED_PAGE)
            progressed = 0
            for window in due:
                if self._close_expired(window, now_ms):
                    closed += 1
                    progressed += 1
            if len(due) < _EXPIRED_PAGE or progressed == 0:
                return closed

    def _close_expired(self, window: WindowView, now_ms: int) -> bool:
        current: WindowView | None = window
        for _ in range(_WINDOW_CLOSE_ATTEMPTS):
            if current is None or current.state is not WindowState.OPEN:
                return False
            with self._uow() as unit:
                credit = self._credits.close_in(unit, current, CloseReason.EXPIRED, now_ms)
                if credit is not None:
                    unit.commit()
                    log.info("window %d of %s expired", current.window_id, current.ecoin_id)
                    return True
            with self._uow(read_only=True) as unit:
                current = unit.windows.get(window.window_id)
        return False
