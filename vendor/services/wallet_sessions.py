"""Server-side wallets at the vendor (docs/protocol.md, "Server-side wallets at
the vendor (choices)"): sign a reader in, pay their clicks, draw windows.

- :meth:`WalletSessions.wallet_signin`: the return from the broker portal;
  ``Broker.ExchangeWalletCode`` turns the code into a WalletGrant, the
  reader's session is stored, and custody of the coin is taken.
- :meth:`WalletSessions.pay_with_wallet`: one click paid from the coin's
  open window, or from a window drawn for it with ``Broker.DrawWindow``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, replace

from netpay.encoding import b64url_encode
from netpay.envelope import open_envelope
from netpay.errors import (
    BadPayword,
    BrokerUnavailable,
    CoinBusy,
    Expired,
    Insufficient,
    LimitExceeded,
    NetPayError,
    NotFound,
    PaymentError,
    PermissionDenied,
    PreconditionFailed,
    SignatureInvalid,
    Unavailable,
)
from netpay.money import words_for
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from vendor.domain import (
    CoinView,
    Item,
    VendorCoinState,
    check_window_click,
    lease_is_live,
    verify_payword,
    window_expiry_ms,
)
from vendor.services.custody import Custody, payment_error_from_broker
from vendor.services.paying import PaymentResult, check_item_id
from vendor.services.ports import VendorPorts, WalletBrokerClient
from vendor.services.windows import Windows, handle_digest, window_result
from vendor.storage import StoredCoin, WalletSession, WindowRecord

__all__ = ["WalletSessions", "WalletSignedIn"]

log = logging.getLogger("vendor.services")

_HANDOFF_ATTEMPTS = 3
_HANDLE_BYTES = 32
_CODE_MAX_CHARS = 64
_WALLET_SESSION_S = 12 * 3600  # the broker portal's session lifetime
_WALLET_DRAW_UNITS = 50  # the least a server-side wallet window draws
_WALLET_ATTEMPTS = 8


@dataclass(frozen=True)
class WalletSignedIn:
    """A reader signed in with a server-side wallet at this newspaper."""

    handle: str  # the netpay_wallet cookie: 32 random bytes, base64url; stored as SHA-256
    ecoin_id: str
    expires_at_ms: int

    def max_age_s(self, now_ms: int) -> int:
        return max(0, (self.expires_at_ms - now_ms) // 1000)


def _check_click_limit(grant: pb.Envelope, amount_minor: int) -> None:
    """The reader's per-click limit, which the broker put in the WalletGrant (the grant
    was verified at sign-in; its payload is read again here, not re-verified)."""
    body = pb.WalletGrant.FromString(grant.payload)
    if body.HasField("max_click_minor") and amount_minor > body.max_click_minor:
        raise LimitExceeded(
            f"this article costs {amount_minor} minor units; your limit per click is "
            f"{body.max_click_minor}"
        )


class WalletSessions:
    """Sign-in, sessions and clicks of readers with a server-side wallet."""

    def __init__(self, ports: VendorPorts, custody: Custody, windows: Windows) -> None:
        self._uow = ports.uow
        self._id = ports.identity
        self._limits = ports.limits
        self._wallets = ports.broker if isinstance(ports.broker, WalletBrokerClient) else None
        self._custody = custody
        self._windows = windows

    def _wallet_broker(self) -> WalletBrokerClient:
        if self._wallets is None:
            raise Unavailable("this vendor's broker client has no server-side wallet calls")
        return self._wallets

    # -- signing in --------------------------------------------------------------

    def wallet_signin(self, code: str, now_ms: int) -> WalletSignedIn:
        """The return from the broker portal: turn ``netpay_code`` into a
        WalletGrant, verify it, store the reader's session and take custody
        of the coin (AcquireCoin with the grant; a hand-off when another
        vendor holds it).

        Raises NotFound (unknown, used or expired code), Expired / Revoked
        (the coin), BrokerUnavailable (the broker is unreachable or its reply
        does not check out). A custody step that fails with CoinBusy or
        BrokerUnavailable does not stop the sign-in: the first article
        retries it.
        """
        if not isinstance(code, str) or not 0 < len(code) <= _CODE_MAX_CHARS:
            raise NotFound("no such sign-in code")
        wallets = self._wallet_broker()
        try:
            reply = wallets.exchange_wallet_code(code)
        except (NotFound, PaymentError):
            raise
        except NetPayError as err:
            raise BrokerUnavailable(f"the broker refused the code: {err.code}") from err
        grant = self._check_wallet_grant(reply.grant, reply.touchstone, now_ms)
        expires = min(
            grant.expires_at_ms - self._limits.max_skew_s * 1000, now_ms + _WALLET_SESSION_S * 1000
        )
        if expires <= now_ms:
            raise Expired("the coin has expired")
        raw = secrets.token_bytes(_HANDLE_BYTES)
        wallet = WalletSession(
            ecoin_id=grant.ecoin_id,
            grant_id=grant.grant_id,
            grant=reply.grant.SerializeToString(),
            created_at_ms=now_ms,
            expires_at_ms=expires,
        )
        with self._uow() as unit:
            unit.sessions.delete_expired(now_ms)
            unit.sessions.add(hashlib.sha256(raw).digest(), wallet)
            unit.commit()
        log.info("reader signed in with server-side coin %s", grant.ecoin_id)
        try:
            self._ensure_held(grant.ecoin_id, reply.grant, now_ms)
        except (CoinBusy, BrokerUnavailable) as err:
            log.info("custody of %s after sign-in deferred: %s", grant.ecoin_id, err.detail)
        return WalletSignedIn(b64url_encode(raw), grant.ecoin_id, expires)

    def _check_wallet_grant(
        self, grant_env: pb.Envelope, touchstone_env: pb.Envelope, now_ms: int
    ) -> pb.WalletGrant:
        """A WalletGrant signed by our broker, naming us, for the touchstone's coin."""
        key = self._id.broker_public_key
        try:
            grant = open_envelope(grant_env, pb.WalletGrant, key)
            touchstone = open_envelope(touchstone_env, pb.Touchstone, key)
        except SignatureInvalid as err:
            raise BrokerUnavailable(f"the broker's wallet grant is invalid: {err.detail}") from err
        broker_id = self._id.broker_id
        if (
            grant.vendor_id != self._id.vendor_id
            or not grant.ecoin_id
            or grant.ecoin_id != touchstone.ecoin_id
            or len(grant.ecoin_id) > 32
            or (grant.broker_id and grant.broker_id != broker_id)
            or (touchstone.broker_id and touchstone.broker_id != broker_id)
            or not grant.grant_id
            or len(grant.grant_id) > 32
        ):
            raise BrokerUnavailable("the broker's wallet grant does not match")
        if grant.expires_at_ms <= now_ms:
            raise Expired("the wallet grant has expired")
        return grant

    def _ensure_held(self, ecoin_id: str, grant: pb.Envelope, now_ms: int) -> StoredCoin:
        """The coin HELD (or HANDING_OFF) here: acquire it with the grant if not."""
        stored = self._custody.coin(ecoin_id)
        if stored is not None and stored.view.state is VendorCoinState.HANDING_OFF:
            if not self._custody.probe_closed(stored.view):
                return stored
            stored = self._custody.coin(ecoin_id)
        if stored is None or stored.view.state is VendorCoinState.CLOSED:
            wallets = self._wallet_broker()
            stored = self._custody.acquire_by(
                ecoin_id,
                lambda force: wallets.acquire_coin_with_grant(ecoin_id, grant, force=force),
                now_ms,
            )
        return stored

    def wallet_session(self, handle: str, now_ms: int) -> WalletSession:
        """The live server-side wallet session behind a ``netpay_wallet`` cookie."""
        digest = handle_digest(handle)
        with self._uow(read_only=True) as unit:
            wallet = unit.sessions.get(digest)
        if wallet is None or wallet.expires_at_ms <= now_ms:
            raise NotFound("no such wallet session; sign in again")
        return wallet

    # -- paying ------------------------------------------------------------------

    def pay_with_wallet(self, handle: str, item: Item, now_ms: int) -> PaymentResult:
        """One click paid with the server-side wallet behind the cookie ``handle``.

        Consumes from the coin's open window when it has room; else draws a
        new window with ``Broker.DrawWindow`` (the payword checked against the
        stored word) and opens it in the transaction that moves the coin's
        index to its top (the old window, if any, closes with a WindowCredit),
        then consumes. The same item again within retry_ttl_s re-serves its
        Receipt. The result's ``words_left`` is the reader's credit: the
        window's words left plus the words not yet drawn.
        """
        check_item_id(item)
        wallet = self.wallet_session(handle, now_ms)
        grant = pb.Envelope.FromString(wallet.grant)
        ecoin_id = wallet.ecoin_id
        renewed = probed = False
        for _ in range(_WALLET_ATTEMPTS):
            since_ms = now_ms - self._limits.retry_ttl_s * 1000
            with self._uow(read_only=True) as unit:
                stored = unit.coins.get(ecoin_id)
                window = unit.windows.open_of(ecoin_id)
                earlier = (
                    unit.windows.click_for(window.window_id, item.item_id, since_ms)
                    if window is not None
                    else None
                )
            if stored is None or stored.view.state is VendorCoinState.CLOSED:
                self._ensure_held(ecoin_id, grant, now_ms)
                continue
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF:
                self._custody.check_handed_over(stored, probe=not probed)
                probed = True
                continue
            if window is not None and window.epoch != coin.epoch:
                window = None  # left from an older epoch: the next draw closes it
            if window is not None and earlier is not None:
                return window_result(window, earlier.receipt, earlier.to_index, True, coin.n)
            if now_ms >= coin.expires_at_ms - self._limits.max_skew_s * 1000:
                raise Expired("the coin has expired")
            words = words_for(item.price, coin.unit_value_minor, coin.currency)
            _check_click_limit(grant, item.price.amount_minor)
            if not lease_is_live(coin, now_ms):
                renewed = self._custody.renew_once(coin, renewed)
                continue
            if window is not None and window.is_usable(now_ms) and window.words_left >= words:
                click = check_window_click(window, item, now_ms)
                done = self._windows.try_consume(window, click, item, now_ms, coin.n)
                if done is not None:
                    return done
                continue
            if self._draw(coin, grant, words, now_ms) is None:
                renewed = self._custody.renew_once(coin, renewed)
            # Drawn (or lost to a twin): the next round consumes from the open window.
        raise CoinBusy("the wallet keeps changing; retry", retry_after_s=1)

    # -- drawing windows -------------------------------------------------------------

    def _draw(self, coin: CoinView, grant: pb.Envelope, words: int, now_ms: int) -> bool | None:
        """Draw and open a window that pays at least ``words``; ``None`` when the
        broker wants the lease renewed first, False when the open lost a race."""
        left = coin.n - coin.index
        if words > left:
            raise Insufficient(f"the coin has {left} words left, the price is {words} words")
        if words > self._limits.max_window_units:
            raise LimitExceeded(f"a window is at most {self._limits.max_window_units} words")
        units = min(max(words, _WALLET_DRAW_UNITS), self._limits.max_window_units, left)
        drawn = self._draw_at_broker(grant, coin.epoch, units, words)
        if drawn is None:
            return None
        reply, units = drawn
        if (
            reply.ecoin_id != coin.ecoin_id
            or reply.epoch != coin.epoch
            or reply.to_index <= coin.index
            or reply.to_index > coin.n
            or reply.to_index - reply.from_index != units
        ):
            raise BrokerUnavailable("the broker's window does not match the coin")
        try:
            verify_payword(bytes.fromhex(coin.ecoin_id), coin, reply.to_index, reply.payword)
        except BadPayword as err:
            raise BrokerUnavailable("the broker's window payword does not verify") from err
        record = WindowRecord(
            ecoin_id=coin.ecoin_id,
            epoch=coin.epoch,
            # No cookie names a drawn window: the reader's session does.
            handle_sha256=hashlib.sha256(secrets.token_bytes(_HANDLE_BYTES)).digest(),
            window_from=coin.index,
            window_top=reply.to_index,
            payword=bytes(reply.payword),
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            opened_at_ms=now_ms,
            expires_at_ms=window_expiry_ms(coin, self._limits, now_ms),
            void_from=coin.index,  # a drawn window starts at the coin's index: no void words
        )
        return self._open_drawn(coin, record, now_ms)

    def _draw_at_broker(
        self, grant: pb.Envelope, epoch: int, units: int, words: int
    ) -> tuple[broker_pb2.DrawWindowResponse, int] | None:
        """``Broker.DrawWindow`` of ``units`` words (the price's ``words`` when the
        reader's daily limit leaves less); the reply and the units drawn, or
        ``None`` when the broker wants the lease renewed first."""
        try:
            try:
                reply = self._wallet_broker().draw_window(grant, epoch, units)
            except LimitExceeded:
                if units == words:
                    raise
                # The reader's daily limit leaves less than a whole window: draw the price.
                units = words
                reply = self._wallet_broker().draw_window(grant, epoch, units)
        except CoinBusy:
            raise
        except PreconditionFailed:
            return None  # not our epoch any more, or the lease lapsed at the broker
        except (PermissionDenied, SignatureInvalid) as err:
            raise NotFound(f"the wallet sign-in is no longer valid: {err.detail}") from err
        except NetPayError as err:
            raise payment_error_from_broker(err) from err
        return reply, units

    def _open_drawn(self, coin: CoinView, record: WindowRecord, now_ms: int) -> bool:
        """Open the drawn window (its words are the broker's now); False when a twin
        request's window already reaches its top."""
        window_id = self._windows.commit_window(coin, record, now_ms, acknowledged=True)
        for _ in range(_HANDOFF_ATTEMPTS):
            if window_id is not None:
                break
            # Lost to a twin request that drew too (another worker, another tab).
            # The broker released our words, so they must not be dropped: unless the
            # twin's window already reaches our top, open ours from the coin's index
            # now (w[to] hashes down to it: the draws are contiguous at the broker).
            with self._uow(read_only=True) as unit:
                again = unit.coins.get(coin.ecoin_id)
            if (
                again is None
                or again.view.state is not VendorCoinState.HELD
                or again.view.epoch != coin.epoch
                or again.view.index >= record.window_top
            ):
                return False
            coin = again.view
            try:
                verify_payword(
                    bytes.fromhex(coin.ecoin_id), coin, record.window_top, record.payword
                )
            except BadPayword:
                return False
            record = replace(record, window_from=coin.index, void_from=coin.index)
            window_id = self._windows.commit_window(coin, record, now_ms, acknowledged=True)
        if window_id is None:
            return False
        log.info(
            "coin %s epoch %d: drawn window (%d, %d] opened",
            coin.ecoin_id,
            coin.epoch,
            record.window_from,
            record.window_top,
        )
        return True
