"""Coins: buy one (client-side or server-side), its status, the reader's list, freeze.

- BuyCoin (:meth:`Coins.buy_coin`): idempotent by the reader's request id;
  debits the reader, credits the float and signs the touchstone in one unit
  of work. A server-side coin's chain is made and sealed here.
- GetCoin, ListCoins and the portal's richer list (:meth:`Coins.portal_coins`);
- FreezeCoin / UnfreezeCoin (loss reporting), through the coin's transition.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace

from broker.domain import (
    CoinRecordView,
    CoinState,
    EpochView,
    Freeze,
    IndexedWord,
    Unfreeze,
    WalletKind,
    effective_state,
    transition,
)
from broker.seedvault import PEBBLE_EVERY
from broker.services.common import apply_coin, check_new_password, coin_for_update, envelope
from broker.services.ledger import Ledger
from broker.services.ports import BrokerPorts
from broker.storage import PurchaseRow, Repos, ServerWalletRow, StoredCoin, StoredRange
from netpay.chain import WORD_BYTES, Chain, new_ecoin_id, new_seed
from netpay.encoding import check_currency, check_ecoin_id
from netpay.envelope import seal
from netpay.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from netpay.money import DEFAULT_CURRENCY
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "MAX_REQUEST_ID_CHARS",
    "BuyCoinInput",
    "CoinStatusView",
    "Coins",
    "PortalCoinView",
    "PurchaseResult",
]

MAX_LISTED_COINS = 2_000
MAX_PORTAL_COINS = 200
MAX_PORTAL_CLICKS_PER_COIN = 200
MAX_REQUEST_ID_CHARS = 64


@dataclass(frozen=True)
class BuyCoinInput:
    request_id: str
    ecoin_id: str
    root: bytes
    n: int
    unit_value_minor: int  # 0 means 1
    currency: str  # "" means EUR
    wallet_kind: WalletKind
    # Server-side coins only (ecoin_id and root are then empty: the broker makes them).
    wallet_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class PurchaseResult:
    touchstone: pb.Envelope
    amount_minor: int
    currency: str
    ecoin_id: str


@dataclass(frozen=True)
class CoinStatusView:
    touchstone: pb.Envelope
    state: CoinState
    frozen: bool
    holder: str | None
    epoch: int
    latest: IndexedWord


@dataclass(frozen=True)
class PortalCoinView:
    """A coin as the portal shows it: what the broker knows today."""

    ecoin_id: str
    wallet_kind: str
    currency: str
    n: int
    unit_value_minor: int
    state: CoinState
    frozen: bool
    holder: str | None
    epoch: int
    latest_index: int
    issued_at_ms: int
    expires_at_ms: int
    epochs: tuple[EpochView, ...]
    # Redeemed clicks, newest first (vendors redeem daily: the newest are not here yet).
    clicks: tuple[StoredRange, ...] = ()
    # Window-credit units on their way back to the reader (or already refunded).
    refund_units: int = 0

    @property
    def refund_minor(self) -> int:
        return self.refund_units * self.unit_value_minor

    @property
    def words_left(self) -> int:
        """n minus the latest index the broker knows (vendors may have spent more since)."""
        return self.n - self.latest_index

    @property
    def value_minor(self) -> int:
        return self.n * self.unit_value_minor

    @property
    def left_minor(self) -> int:
        return self.words_left * self.unit_value_minor


def _purchase_fingerprint(req: BuyCoinInput) -> bytes:
    """SHA-256 over the normalised request (everything but the request id)."""
    h = hashlib.sha256(b"netpay-buy-v1\x00")
    for part in (
        req.ecoin_id.encode(),
        req.root,
        str(req.n).encode(),
        str(req.unit_value_minor).encode(),
        req.currency.encode(),
        req.wallet_kind.value.encode(),
    ):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


def _status(stored: StoredCoin, now_ms: int) -> CoinStatusView:
    coin = stored.view
    return CoinStatusView(
        touchstone=envelope(stored.touchstone),
        state=effective_state(coin, now_ms),
        frozen=coin.frozen,
        holder=coin.holder,
        epoch=coin.epoch,
        latest=coin.latest,
    )


def _replay_purchase(repos: Repos, earlier: PurchaseRow, fingerprint: bytes) -> PurchaseResult:
    if not secrets.compare_digest(earlier.fingerprint, fingerprint):
        raise AlreadyExists("request id reused with a different request")
    stored = repos.coins.get(earlier.ecoin_id)
    assert stored is not None, earlier.ecoin_id
    return PurchaseResult(
        envelope(stored.touchstone), earlier.amount_minor, earlier.currency, earlier.ecoin_id
    )


def _new_coin(req: BuyCoinInput, expires_at_ms: int) -> CoinRecordView:
    return CoinRecordView(
        ecoin_id=req.ecoin_id,
        n=req.n,
        unit_value_minor=req.unit_value_minor,
        expires_at_ms=expires_at_ms,
        state=CoinState.FREE,
        frozen=False,
        holder=None,
        epoch=0,
        latest=IndexedWord(0, req.root),
    )


class Coins:
    """Selling coins and reporting on them."""

    def __init__(self, ports: BrokerPorts, ledger: Ledger) -> None:
        self._ports = ports
        self._ledger = ledger

    # -- buy ------------------------------------------------------------------------

    def _normalise_buy(self, req: BuyCoinInput) -> BuyCoinInput:
        limits = self._ports.limits
        if not 1 <= len(req.request_id) <= MAX_REQUEST_ID_CHARS:
            raise InvalidArgument(f"request id must have 1..{MAX_REQUEST_ID_CHARS} characters")
        if req.wallet_kind is WalletKind.SERVER_SIDE:
            if self._ports.vault is None:
                raise Unavailable("this broker sells no server-side coins")
            if req.ecoin_id or req.root:
                raise InvalidArgument("the broker chooses a server-side coin's id and chain")
            check_new_password(req.wallet_password)
        elif req.wallet_kind is WalletKind.CLIENT_SIDE:
            check_ecoin_id(req.ecoin_id)
            if len(req.root) != WORD_BYTES:
                raise InvalidArgument(f"root must be {WORD_BYTES} bytes")
            if req.wallet_password:
                raise InvalidArgument("a client-side coin has no wallet password")
        else:
            raise InvalidArgument("wallet kind must be client-side or server-side")
        if not 1 <= req.n <= limits.max_chain_units:
            raise InvalidArgument(f"n must be 1..{limits.max_chain_units}")
        unit = req.unit_value_minor or 1
        if not 1 <= unit <= limits.max_click_amount_minor:
            raise InvalidArgument(
                f"unit value must be 1..{limits.max_click_amount_minor} minor units"
            )
        currency = req.currency or DEFAULT_CURRENCY
        check_currency(currency)
        if currency not in self._ports.currencies:
            raise InvalidArgument(f"this broker sells coins in {', '.join(self._ports.currencies)}")
        return replace(req, unit_value_minor=unit, currency=currency)

    def buy_coin(self, reader_id: str, request: BuyCoinInput) -> PurchaseResult:
        """Sell a coin: debit the reader, credit the float, sign the touchstone.

        A server-side coin is made here: fresh ecoin id and seed, the chain
        sealed with the wallet data key, the password kept as Argon2id. Its
        fingerprint leaves the password out; a replay must present the same
        password (verified against the stored hash).
        """
        req = self._normalise_buy(request)
        fingerprint = _purchase_fingerprint(req)
        if req.wallet_kind is WalletKind.SERVER_SIDE:
            return self._buy_server_side(reader_id, req, fingerprint)
        try:
            return self._buy_once(reader_id, req, fingerprint)
        except AlreadyExists:
            # A concurrent identical request may have won the unique key: the
            # replay path then returns its result; anything else fails again.
            return self._buy_once(reader_id, req, fingerprint)

    def _buy_server_side(
        self, reader_id: str, req: BuyCoinInput, fingerprint: bytes
    ) -> PurchaseResult:
        replayed = self._replay_server_side(reader_id, req, fingerprint)
        if replayed is not None:
            return replayed
        assert self._ports.vault is not None
        chain = Chain.make(new_ecoin_id(), req.n, new_seed(), pebble_every=PEBBLE_EVERY)
        ecoin_id = chain.ecoin_id.hex()
        secret = ServerWalletRow(
            ecoin_id=ecoin_id,
            sealed_chain=self._ports.vault.seal(chain),
            password_hash=self._ports.passwords.hash(req.wallet_password),
        )
        made = replace(req, ecoin_id=ecoin_id, root=chain.root)
        try:
            return self._buy_once(reader_id, made, fingerprint, server_wallet=secret)
        except AlreadyExists:
            # The same request id won meanwhile (a concurrent replay): answer as a replay.
            replayed = self._replay_server_side(reader_id, req, fingerprint)
            if replayed is None:
                raise
            return replayed

    def _replay_server_side(
        self, reader_id: str, req: BuyCoinInput, fingerprint: bytes
    ) -> PurchaseResult | None:
        """The first result of this request id, if any; the password must match it."""
        passwords = self._ports.passwords
        with self._ports.uow() as repos:
            earlier = repos.purchases.get(reader_id, req.request_id)
            if earlier is None:
                return None
            if not secrets.compare_digest(earlier.fingerprint, fingerprint):
                raise AlreadyExists("request id reused with a different request")
            wallet = repos.wallets.get(earlier.ecoin_id)
            result = _replay_purchase(repos, earlier, fingerprint)
            stored_hash = wallet.password_hash if wallet is not None else passwords.dummy_hash
        # Verified outside the transaction: Argon2id is slow and needs no lock.
        if wallet is None or not passwords.verify(stored_hash, req.wallet_password):
            raise AlreadyExists("request id reused with a different request")
        return result

    def _buy_once(
        self,
        reader_id: str,
        req: BuyCoinInput,
        fingerprint: bytes,
        *,
        server_wallet: ServerWalletRow | None = None,
    ) -> PurchaseResult:
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            earlier = repos.purchases.get(reader_id, req.request_id)
            if earlier is not None:
                if server_wallet is not None:
                    raise AlreadyExists("request id already used")  # replayed by the caller
                return _replay_purchase(repos, earlier, fingerprint)
            if repos.coins.exists(req.ecoin_id):
                raise AlreadyExists("ecoin id already sold under another request")
            self._ledger.settle_flags(repos, reader_id, now_ms)
            amount_minor = req.n * req.unit_value_minor
            transaction_id = self._ledger.collect_coin(
                repos, reader_id, amount_minor, req.currency, req.ecoin_id, now_ms
            )
            touchstone = self._record_coin(repos, reader_id, req, now_ms)
            if server_wallet is not None:
                assert req.wallet_kind is WalletKind.SERVER_SIDE
                server_wallet.created_at_ms = now_ms
                repos.wallets.add(server_wallet)
            repos.purchases.add(
                PurchaseRow(
                    reader_id=reader_id,
                    request_id=req.request_id,
                    fingerprint=fingerprint,
                    ecoin_id=req.ecoin_id,
                    amount_minor=amount_minor,
                    currency=req.currency,
                    transaction_id=transaction_id,
                    created_at_ms=now_ms,
                )
            )
            repos.commit()
        return PurchaseResult(touchstone, amount_minor, req.currency, req.ecoin_id)

    def _record_coin(
        self, repos: Repos, reader_id: str, req: BuyCoinInput, now_ms: int
    ) -> pb.Envelope:
        """Sign the coin's touchstone and add the coin, FREE at epoch 0."""
        expires_at_ms = now_ms + self._ports.limits.coin_expiry_s * 1000
        touchstone = seal(
            pb.Touchstone(
                ecoin_id=req.ecoin_id,
                root=req.root,
                n=req.n,
                unit_value_minor=req.unit_value_minor,
                currency=req.currency,
                wallet_kind=(
                    pb.WALLET_KIND_SERVER_SIDE
                    if req.wallet_kind is WalletKind.SERVER_SIDE
                    else pb.WALLET_KIND_CLIENT_SIDE
                ),
                owner=reader_id,
                issued_at_ms=now_ms,
                expires_at_ms=expires_at_ms,
                broker_id=self._ports.identity.broker_id,
            ),
            self._ports.identity.key,
        )
        repos.coins.add(
            _new_coin(req, expires_at_ms),
            owner=reader_id,
            currency=req.currency,
            wallet_kind=req.wallet_kind.value,
            root=req.root,
            touchstone=touchstone.SerializeToString(),
            issued_at_ms=now_ms,
        )
        return touchstone

    # -- status -------------------------------------------------------------------------

    def get_coin(
        self, ecoin_id: str, *, reader_id: str | None = None, vendor_id: str | None = None
    ) -> CoinStatusView:
        """A coin's status for its owner or for any vendor."""
        assert (reader_id is None) != (vendor_id is None)
        check_ecoin_id(ecoin_id)
        with self._ports.uow() as repos:
            stored = repos.coins.get(ecoin_id)
        if stored is None or (reader_id is not None and stored.owner != reader_id):
            raise NotFound(f"no coin {ecoin_id}")
        return _status(stored, self._ports.clock.now_ms())

    def list_coins(self, reader_id: str) -> list[CoinStatusView]:
        """The reader's coins, newest first (at most MAX_LISTED_COINS)."""
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow() as repos:
            coins = repos.coins.list_for_owner(reader_id, MAX_LISTED_COINS)
        return [_status(stored, now_ms) for stored in coins]

    def freeze_coin(
        self, ecoin_id: str, *, frozen: bool = True, reader_id: str | None = None
    ) -> CoinStatusView:
        """Set or clear the frozen flag (loss reporting); only the owner when ``reader_id``
        is given. Idempotent."""
        check_ecoin_id(ecoin_id)
        with self._ports.uow() as repos:
            stored = coin_for_update(repos, ecoin_id)
            if reader_id is not None and stored.owner != reader_id:
                raise NotFound(f"no coin {ecoin_id}")
            after = stored.view
            if stored.view.frozen != frozen:
                after = transition(stored.view, Freeze() if frozen else Unfreeze())
                apply_coin(repos, stored.view, after)
                repos.commit()
        return _status(replace(stored, view=after), self._ports.clock.now_ms())

    def portal_coins(self, reader_id: str) -> list[PortalCoinView]:
        """The reader's coins, newest first (at most MAX_PORTAL_COINS), with custody epochs."""
        now_ms = self._ports.clock.now_ms()
        with self._ports.uow(read_only=True) as repos:
            coins = repos.coins.list_for_owner(reader_id, MAX_PORTAL_COINS)
            epochs = repos.coins.epochs_of([c.view.ecoin_id for c in coins])
            clicks = {
                c.view.ecoin_id: tuple(
                    repos.redemption.ranges(
                        ecoin_ids=[c.view.ecoin_id], limit=MAX_PORTAL_CLICKS_PER_COIN
                    )
                )
                for c in coins
            }
            refunds = {
                c.view.ecoin_id: repos.redemption.pending_refund_units(c.view.ecoin_id)
                for c in coins
            }
        views = []
        for stored in coins:
            coin = stored.view
            touchstone = pb.Touchstone()
            touchstone.ParseFromString(envelope(stored.touchstone).payload)
            views.append(
                PortalCoinView(
                    ecoin_id=coin.ecoin_id,
                    wallet_kind=stored.wallet_kind,
                    currency=stored.currency,
                    n=coin.n,
                    unit_value_minor=coin.unit_value_minor,
                    state=effective_state(coin, now_ms),
                    frozen=coin.frozen,
                    holder=coin.holder,
                    epoch=coin.epoch,
                    latest_index=coin.latest.index,
                    issued_at_ms=touchstone.issued_at_ms,
                    expires_at_ms=coin.expires_at_ms,
                    epochs=tuple(epochs[coin.ecoin_id]),
                    clicks=clicks[coin.ecoin_id],
                    refund_units=refunds[coin.ecoin_id],
                )
            )
        return views
