"""The reader's account at the broker: register, log in, pin the broker.

Use cases: ``register`` (open a reader account and log in) and ``login``
(at the stored broker unless another address is given). The first contact
pins the broker's id and Ed25519 key (GetInfo); a later change is refused.
A login also takes the spending limits kept at the broker into the wallet
(:meth:`ewallet_client.wallet.limits.Limits.sync_spending_limits`).
"""

from __future__ import annotations

import secrets

from ewallet_client.broker_client import BrokerApi
from ewallet_client.store import Settings
from ewallet_client.wallet.limits import Limits
from ewallet_client.wallet.ports import WalletPorts
from netpay.chain import MAX_CHAIN_UNITS
from netpay.encoding import PARTY_ID_RE
from netpay.envelope import PUBLIC_KEY_BYTES
from netpay.errors import InvalidArgument, PermissionDenied, SignatureInvalid

__all__ = ["MAX_PASSWORD_CHARS", "MAX_TOKEN_CHARS", "MAX_USERNAME_CHARS", "Account"]

MAX_USERNAME_CHARS = 128
MAX_PASSWORD_CHARS = 1024
MAX_TOKEN_CHARS = 256


def _check_credentials(username: str, password: str) -> None:
    if not 1 <= len(username) <= MAX_USERNAME_CHARS:
        raise InvalidArgument(f"username must be 1..{MAX_USERNAME_CHARS} characters")
    if not 1 <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidArgument(f"password must be 1..{MAX_PASSWORD_CHARS} characters")


class Account:
    """Registration and login at the wallet's broker."""

    def __init__(self, ports: WalletPorts, limits: Limits) -> None:
        self._link = ports.link
        self._limits = limits

    def settings(self) -> Settings:
        """The broker the wallet pinned and the reader it is logged in as."""
        return self._link.settings()

    def register(self, broker_addr: str, username: str, password: str) -> str:
        """Open a reader account at the broker and log in; returns the reader id."""
        _check_credentials(username, password)
        client = self._connect_and_pin(broker_addr)
        reader_id = client.register_reader(username, password)
        self._login(client, broker_addr, username, password)
        return reader_id

    def login(self, broker_addr: str | None, username: str, password: str) -> None:
        """Log in (at the stored broker when ``broker_addr`` is None); keeps the token."""
        _check_credentials(username, password)
        address = broker_addr or self._link.settings().broker_addr
        if not address:
            raise InvalidArgument("no broker address: pass --broker H:P")
        self._login(self._connect_and_pin(address), address, username, password)

    def _connect_and_pin(self, address: str) -> BrokerApi:
        """GetInfo; pin the broker id and key at first contact, refuse a change later."""
        client = self._link.broker(address)
        info = client.get_info()
        if not PARTY_ID_RE.fullmatch(info.broker_id) or len(info.public_key) != PUBLIC_KEY_BYTES:
            raise SignatureInvalid("the broker's GetInfo has no valid id and Ed25519 key")
        st = self._link.settings()
        if st.broker_public_key is not None:
            if not secrets.compare_digest(st.broker_public_key, info.public_key):
                raise PermissionDenied("broker key changed")
            if st.broker_id != info.broker_id:
                raise PermissionDenied("broker id changed")
        limits = info.limits
        self._link.save_settings(
            broker_addr=address,
            broker_id=info.broker_id,
            broker_public_key=info.public_key,
            max_gap_units=limits.max_gap_units or st.max_gap_units,
            max_chain_units=min(limits.max_chain_units or MAX_CHAIN_UNITS, MAX_CHAIN_UNITS),
            max_click_amount_minor=limits.max_click_amount_minor or st.max_click_amount_minor,
            max_skew_s=limits.max_skew_s or st.max_skew_s,
        )
        return client

    def _login(self, client: BrokerApi, address: str, username: str, password: str) -> None:
        resp = client.login(username, password)
        if not 1 <= len(resp.token) <= MAX_TOKEN_CHARS:
            raise InvalidArgument("the broker returned no usable token")
        self._link.save_settings(
            broker_addr=address,
            username=username,
            reader_id=resp.reader_id or self._link.settings().reader_id,
            token=resp.token,
            token_expires_at_ms=resp.expires_at_ms or None,
        )
        # The limits the reader keeps at the broker (the portal, other wallets).
        self._limits.sync_spending_limits()
