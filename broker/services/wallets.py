"""Server-side wallets: sign-in at the portal, one-time codes, grants, draw_window.

- the portal's wallet sign-in for a newspaper (:meth:`Wallets.signin_target`,
  :meth:`Wallets.wallet_signin`, the one-click :meth:`Wallets.wallet_continue`
  with the browser's wallet session);
- ExchangeWalletCode: the newspaper's one-time code -> a signed WalletGrant;
- DrawWindow: the broker releases ``w[latest + units]`` of the sealed chain
  to the coin's holder, within the grant and the reader's daily limit.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from broker.domain import (
    CoinState,
    DrawWindow,
    IndexedWord,
    WalletKind,
    WindowRequest,
    allowed_window_units,
    check_can_draw,
    effective_state,
    transition,
)
from broker.services.common import (
    MAX_PASSWORD_CHARS,
    PORTAL_SESSION_TTL_S,
    apply_coin,
    coin_for_update,
    envelope,
    hash_token,
    new_token,
    retry_after_s,
    session_hash,
)
from broker.services.identity import Identity
from broker.services.ports import BrokerPorts
from broker.storage import (
    Repos,
    StoredCoin,
    WalletCodeRow,
    WalletGrantRow,
    WalletSessionRow,
)
from netpay.chain import Chain
from netpay.encoding import check_party_id
from netpay.envelope import open_envelope, seal
from netpay.errors import (
    Conflict,
    Expired,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    Revoked,
    SignatureInvalid,
    Unauthenticated,
    Unavailable,
)
from netpay.spending import check_spend, utc_day
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "MAX_RETURN_TO_CHARS",
    "SigninTarget",
    "WalletGrantView",
    "WalletSignin",
    "Wallets",
    "WindowDrawView",
]

MAX_WALLET_SIGNIN_FAILURES = 5
WALLET_SIGNIN_WINDOW_S = 300
WALLET_CODE_TTL_S = 60
MAX_WALLET_CODE_CHARS = 64
MAX_RETURN_TO_CHARS = 2048
_ECOIN_ID_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class SigninTarget:
    """Where a portal wallet sign-in for a vendor returns to."""

    vendor_id: str
    display_name: str
    web_origin: str
    return_to: str


@dataclass(frozen=True)
class WalletSignin:
    """A successful wallet sign-in: the vendor's one-time code and the browser's session."""

    ecoin_id: str
    code: str = field(repr=False)
    session_token: str = field(repr=False)


@dataclass(frozen=True)
class WalletGrantView:
    grant: pb.Envelope
    touchstone: pb.Envelope
    latest_index: int


@dataclass(frozen=True)
class WindowDrawView:
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    payword: bytes
    touchstone: pb.Envelope
    grant_units_left: int


def _live_wallet_coin(stored: StoredCoin | None, now_ms: int) -> StoredCoin:
    if stored is None or stored.wallet_kind != WalletKind.SERVER_SIDE.value:
        raise NotFound("no such server-side wallet")
    if effective_state(stored.view, now_ms) is CoinState.EXPIRED:
        raise Expired("the e-coin has expired")
    if stored.view.frozen:
        raise Revoked("the e-coin is frozen")
    return stored


def _check_wallet_signin_rate(
    repos: Repos, ecoin_id: str, window_start_ms: int, now_ms: int
) -> None:
    failures = repos.wallets.recent_failures(ecoin_id, window_start_ms)
    wait_s = retry_after_s(failures, MAX_WALLET_SIGNIN_FAILURES, WALLET_SIGNIN_WINDOW_S, now_ms)
    if wait_s is not None:
        raise PermissionDenied(
            f"too many failed sign-ins with this e-coin; retry in {wait_s} s",
            retry_after_s=wait_s,
        )


def _issue_code(repos: Repos, ecoin_id: str, vendor_id: str, now_ms: int) -> str:
    code = new_token()
    repos.wallets.add_code(
        WalletCodeRow(
            code_sha256=hash_token(code),
            ecoin_id=ecoin_id,
            vendor_id=vendor_id,
            created_at_ms=now_ms,
            expires_at_ms=now_ms + WALLET_CODE_TTL_S * 1000,
        ),
        now_ms,
    )
    return code


class Wallets:
    """The broker's side of server-side wallets."""

    def __init__(self, ports: BrokerPorts, identity: Identity) -> None:
        self._ports = ports
        self._identity = identity

    # -- sign-in at the portal ---------------------------------------------------------

    def signin_target(self, vendor_id: str, return_to: str) -> SigninTarget:
        """Check a sign-in request: ``return_to`` must lie on the vendor's certified origin.

        InvalidArgument for anything else (another origin, user info, a
        relative URL, control characters, more than MAX_RETURN_TO_CHARS).
        """
        check_party_id(vendor_id)
        if not 1 <= len(return_to) <= MAX_RETURN_TO_CHARS or not return_to.isprintable():
            raise InvalidArgument("return_to must be an absolute URL of the newspaper")
        with self._ports.uow() as repos:
            origin, name = self._identity.certified_origin(
                repos, vendor_id, self._ports.clock.now_ms()
            )
        try:
            parts = urlsplit(return_to)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise InvalidArgument("return_to is not a valid URL") from None
        if (
            parts.scheme not in ("http", "https")
            or "@" in parts.netloc
            or "\\" in return_to
            or f"{parts.scheme}://{parts.netloc}".lower() != origin.lower()
        ):
            raise InvalidArgument(f"return_to must be on {vendor_id}'s web origin {origin}")
        return SigninTarget(vendor_id, name, origin, return_to)

    def wallet_signin(self, ecoin_id: str, password: str, vendor_id: str) -> WalletSignin:
        """E-coin id + wallet password at the portal -> a one-time code for ``vendor_id``.

        Failed attempts are counted per e-coin id (unknown ids too): after
        MAX_WALLET_SIGNIN_FAILURES within WALLET_SIGNIN_WINDOW_S the answer is
        PermissionDenied with ``retry_after_s``. The browser also gets a wallet
        session (its token; only its hash is stored) for one-click sign-ins.
        """
        check_party_id(vendor_id)
        ecoin_id = ecoin_id.strip().lower()
        wrong = Unauthenticated("wrong e-coin id or wallet password")
        if not _ECOIN_ID_RE.fullmatch(ecoin_id) or len(password) > MAX_PASSWORD_CHARS:
            raise wrong
        passwords = self._ports.passwords
        now_ms = self._ports.clock.now_ms()
        window_start_ms = now_ms - WALLET_SIGNIN_WINDOW_S * 1000
        with self._ports.uow() as repos:
            self._identity.certified_origin(repos, vendor_id, now_ms)
            _check_wallet_signin_rate(repos, ecoin_id, window_start_ms, now_ms)
            wallet = repos.wallets.get(ecoin_id)
            stored_hash = wallet.password_hash if wallet is not None else passwords.dummy_hash
        ok = passwords.verify(stored_hash, password) and wallet is not None
        session_token = new_token()
        with self._ports.uow() as repos:
            repos.wallets.prune_failures(window_start_ms)
            if not ok:
                repos.wallets.add_failure(ecoin_id, now_ms)
                repos.commit()
                raise wrong
            _check_wallet_signin_rate(repos, ecoin_id, window_start_ms, now_ms)
            repos.wallets.clear_failures(ecoin_id)
            stored = _live_wallet_coin(repos.coins.get(ecoin_id), now_ms)
            code = _issue_code(repos, ecoin_id, vendor_id, now_ms)
            repos.wallets.add_session(
                WalletSessionRow(
                    session_sha256=hash_token(session_token),
                    ecoin_id=ecoin_id,
                    created_at_ms=now_ms,
                    expires_at_ms=min(
                        now_ms + PORTAL_SESSION_TTL_S * 1000, stored.view.expires_at_ms
                    ),
                ),
                now_ms,
            )
            repos.commit()
        return WalletSignin(ecoin_id=ecoin_id, code=code, session_token=session_token)

    def wallet_session_coin(self, session_token: str) -> str | None:
        """The e-coin a live wallet session signed in with, else None."""
        digest = session_hash(session_token)
        if digest is None:
            return None
        with self._ports.uow() as repos:
            return repos.wallets.session_coin(digest, self._ports.clock.now_ms())

    def wallet_continue(self, session_token: str, vendor_id: str) -> WalletSignin:
        """One-click sign-in at another vendor with the session's e-coin: a fresh code."""
        check_party_id(vendor_id)
        digest = session_hash(session_token)
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            self._identity.certified_origin(repos, vendor_id, now_ms)
            ecoin_id = repos.wallets.session_coin(digest, now_ms) if digest else None
            if ecoin_id is None:
                raise Unauthenticated("the wallet session has ended; sign in again")
            _live_wallet_coin(repos.coins.get(ecoin_id), now_ms)
            code = _issue_code(repos, ecoin_id, vendor_id, now_ms)
            repos.commit()
        return WalletSignin(ecoin_id=ecoin_id, code=code, session_token=session_token)

    def wallet_session_end(self, session_token: str) -> None:
        """Forget a browser's wallet session (unknown ones are fine)."""
        digest = session_hash(session_token)
        if digest is None:
            return
        with self._ports.uow() as repos:
            repos.wallets.delete_session(digest)
            repos.commit()

    # -- grants ---------------------------------------------------------------------------

    def exchange_wallet_code(self, caller: str, code: str) -> WalletGrantView:
        """ExchangeWalletCode: the caller's live, unused code -> a WalletGrant (single use)."""
        unknown = NotFound("unknown, expired or already used wallet code")
        if not 1 <= len(code) <= MAX_WALLET_CODE_CHARS:
            raise unknown
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            ecoin_id = repos.wallets.use_code(hash_token(code), caller, now_ms)
            if ecoin_id is None:
                raise unknown
            stored = _live_wallet_coin(repos.coins.get(ecoin_id), now_ms)
            coin = stored.view
            grant_msg = pb.WalletGrant(
                grant_id=secrets.token_hex(16),
                ecoin_id=ecoin_id,
                vendor_id=caller,
                max_units=coin.n - coin.latest.index,
                expires_at_ms=coin.expires_at_ms,
                broker_id=self._ports.identity.broker_id,
                issued_at_ms=now_ms,
            )
            limits = repos.spending.limits_in(stored.owner, stored.currency)
            if limits is not None and limits.max_click_minor is not None:
                grant_msg.max_click_minor = limits.max_click_minor
            repos.wallets.add_grant(
                WalletGrantRow(
                    grant_id=grant_msg.grant_id,
                    ecoin_id=ecoin_id,
                    vendor_id=caller,
                    max_units=grant_msg.max_units,
                    drawn_units=0,
                    issued_at_ms=now_ms,
                    expires_at_ms=grant_msg.expires_at_ms,
                )
            )
            repos.commit()
        return WalletGrantView(
            grant=seal(grant_msg, self._ports.identity.key),
            touchstone=envelope(stored.touchstone),
            latest_index=coin.latest.index,
        )

    def check_wallet_grant(
        self, repos: Repos, grant_envelope: pb.Envelope, caller: str, now_ms: int
    ) -> tuple[pb.WalletGrant, WalletGrantRow]:
        """A WalletGrant this broker signed and issued, for the caller, not expired."""
        identity = self._ports.identity
        grant = open_envelope(grant_envelope, pb.WalletGrant, identity.public_key)
        if grant.broker_id != identity.broker_id:
            raise SignatureInvalid("the wallet grant names another broker")
        if grant.vendor_id != caller:
            raise PermissionDenied("the wallet grant names another vendor")
        if grant.expires_at_ms <= now_ms:
            raise Expired("the wallet grant has expired")
        row = repos.wallets.grant(grant.grant_id) if len(grant.grant_id) == 32 else None
        if (
            row is None
            or row.ecoin_id != grant.ecoin_id
            or row.vendor_id != caller
            or row.max_units != grant.max_units
        ):
            raise PermissionDenied("unknown wallet grant")
        return grant, row

    # -- windows ----------------------------------------------------------------------------

    def draw_window(
        self, caller: str, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> WindowDrawView:
        """DrawWindow: release ``w[i + units]`` to the holder and record it as the latest word.

        The latest known word moves and the grant's drawn units grow in the
        same transaction that computes the word; nothing changes on a refusal.
        """
        now_ms = self._ports.clock.now_ms()
        limits = self._ports.limits
        busy_s = limits.handoff_ttl_s
        with self._ports.uow() as repos:
            grant, grant_row = self.check_wallet_grant(repos, wallet_grant, caller, now_ms)
            stored = coin_for_update(repos, grant.ecoin_id)
            coin = stored.view
            wallet = repos.wallets.get(coin.ecoin_id)
            if stored.wallet_kind != WalletKind.SERVER_SIDE.value or wallet is None:
                raise InvalidArgument("windows are drawn only from server-side coins")
            check_can_draw(coin, caller, epoch, now_ms, busy_retry_after_s=busy_s)
            allowed = allowed_window_units(
                WindowRequest(
                    units=units,
                    latest_index=coin.latest.index,
                    n=coin.n,
                    max_window_units=limits.max_window_units,
                    grant_max_units=grant_row.max_units,
                    grant_drawn_units=grant_row.drawn_units,
                )
            )
            chain = self._open_chain(coin.ecoin_id, coin.n, wallet.sealed_chain)
            _charge_day(repos, stored, allowed * coin.unit_value_minor, now_ms)
            top = IndexedWord(coin.latest.index + allowed, chain.word(coin.latest.index + allowed))
            apply_coin(
                repos, coin, transition(coin, DrawWindow(caller, epoch, top, now_ms, busy_s))
            )
            if not repos.wallets.draw_from_grant(
                grant_row.grant_id, grant_row.drawn_units, allowed
            ):
                raise Conflict("the wallet grant changed meanwhile; try again")
            repos.commit()
        return WindowDrawView(
            ecoin_id=coin.ecoin_id,
            epoch=epoch,
            from_index=coin.latest.index,
            to_index=top.index,
            payword=top.word,
            touchstone=envelope(stored.touchstone),
            grant_units_left=grant_row.max_units - grant_row.drawn_units - allowed,
        )

    def _open_chain(self, ecoin_id: str, n: int, sealed_chain: bytes) -> Chain:
        if self._ports.vault is None:
            raise Unavailable("this broker has no wallet data key")
        try:
            return self._ports.vault.open(ecoin_id, n, sealed_chain)
        except ValueError as exc:
            raise Unavailable(f"the coin's chain cannot be opened: {exc}") from None


def _charge_day(repos: Repos, stored: StoredCoin, amount_minor: int, now_ms: int) -> None:
    """The reader's daily limit: the window's value counts against the day (a
    compare-and-set on the day's counter); LimitExceeded once it would pass it."""
    day = utc_day(now_ms)
    limits = repos.spending.limits_in(stored.owner, stored.currency)
    cap = None if limits is None else limits.max_day_minor
    if not repos.spending.charge(stored.owner, day, stored.currency, amount_minor, cap):
        check_spend(
            limits,
            amount_minor,
            repos.spending.spent(stored.owner, day, stored.currency),
            per_click=False,
        )
        raise LimitExceeded("the reader's daily spending limit is reached")
