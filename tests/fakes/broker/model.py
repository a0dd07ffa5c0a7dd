"""The one fake broker: its state, the wallet's RPCs and the custody rules.

:class:`FakeBroker` keeps one coin table (:mod:`tests.fakes.broker.coins`),
one signing key, one certificate book, one ``down`` switch and one call
counter. The wallet calls it as its ``BrokerApi`` (``broker.factory``); a
vendor calls it through ``broker.client(vendor_id)`` (or
``broker.wallet_client(vendor_id)``, :mod:`tests.fakes.broker.clients`),
which applies the custody rules below as that vendor.
"""

from __future__ import annotations

import collections
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from netpay.chain import Chain, new_ecoin_id, new_seed, seen_of, verify_word
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, open_envelope, seal
from netpay.errors import (
    AlreadyExists,
    AlreadySpent,
    BadPayword,
    BrokerUnavailable,
    Insufficient,
    NetPayError,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
)
from netpay.limits import DEFAULT_LIMITS, Limits
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.fakes.broker.clients import FakeBrokerClient, FakeWalletClient
from tests.fakes.broker.coins import FakeCoin, LatestWords
from vendor.services import VendorIdentity

__all__ = ["DAY_MS", "FakeBroker", "VendorEntry"]

DAY_MS = 86_400_000


@dataclass
class VendorEntry:
    """A vendor in the certificate book: its key, where it listens, its site.

    ``issued`` is the certificate ``certify`` sealed, served as it is (a
    wallet test may have it sealed with another key); without it, each call
    seals a certificate valid for a day from then (``enroll``, the vendor
    tests, whose clock runs for days).
    """

    public_key: bytes
    grpc_address: str
    web_origin: str
    issued: pb.Envelope | None = None


class FakeBroker:
    """An in-process broker with the wallet's RPCs and, per vendor, the vendor's."""

    def __init__(
        self, clock: FakeClock, *, broker_id: str = "broker", limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.clock = clock
        self.broker_id = broker_id
        self.key = SigningKey.generate()
        self.limits = limits
        self.coins: dict[str, FakeCoin] = {}  # the coin table
        self.vendors: dict[str, VendorEntry] = {}  # the certificate book
        self.down = False  # every RPC raises BrokerUnavailable
        self.calls: collections.Counter[str] = collections.Counter()  # RPC name -> calls
        self.lock = threading.RLock()
        # readers
        self.readers: dict[str, tuple[str, str]] = {}  # username -> (password, reader id)
        self.tokens: dict[str, str] = {}  # token -> reader id
        self.balances: dict[str, int] = {}  # reader id -> EUR minor
        # reader id -> currency -> the limits SetSpendingLimits kept
        self.spending_limits: dict[str, dict[str, bpb.SpendingLimit]] = {}
        # sales
        self.sales: dict[str, bpb.BuyCoinResponse] = {}  # request id -> reply
        self.buy_requests: list[bpb.BuyCoinRequest] = []
        self.fail_buy_before: list[NetPayError] = []  # raised before the sale
        self.lose_buy_replies = 0  # sell, then raise BrokerUnavailable
        self.addresses: list[str] = []  # what the wallet's factory was asked for
        # vendors
        self.window_credits: list[pb.Envelope] = []  # forwarded with RecordHandoff
        self.codes: dict[str, tuple[str, str]] = {}  # wallet code -> (ecoin id, vendor id)

    @property
    def max_gap_units(self) -> int:
        """The limits' gap (GetInfo tells the wallet; the fake newspaper allows it)."""
        return self.limits.max_gap_units

    @max_gap_units.setter
    def max_gap_units(self, units: int) -> None:
        self.limits = self.limits.replace(max_gap_units=units)

    @property
    def latest(self) -> LatestWords:
        """``latest[ecoin_id] = (index, word)``: move a coin's latest known word."""
        return LatestWords(self.coins)

    @property
    def certificate_calls(self) -> int:
        return self.calls["GetVendorCertificate"]

    @property
    def get_coin_calls(self) -> int:
        return self.calls["GetCoin"]

    def _check_up(self, name: str) -> None:
        self.calls[name] += 1
        if self.down:
            raise BrokerUnavailable("UNAVAILABLE: fake broker is down")

    def _add_coin(self, touchstone: pb.Touchstone, chain: Chain | None = None) -> FakeCoin:
        coin = FakeCoin(touchstone, seal(touchstone, self.key), chain, latest_word=touchstone.root)
        self.coins[touchstone.ecoin_id] = coin
        return coin

    # -- the wallet's face: BrokerApi, BrokerFactory = Callable[[str], BrokerApi] -----

    def factory(self, address: str) -> FakeBroker:
        self.addresses.append(address)
        return self

    def close(self) -> None:
        pass

    def _reader(self, token: str) -> str:
        if token not in self.tokens:
            raise Unauthenticated("unknown token")
        return self.tokens[token]

    def get_info(self) -> bpb.BrokerInfo:
        self._check_up("GetInfo")
        return bpb.BrokerInfo(
            broker_id=self.broker_id,
            public_key=self.key.public_key,
            currencies=["EUR"],
            limits=bpb.Limits(
                max_chain_units=self.limits.max_chain_units,
                max_gap_units=self.limits.max_gap_units,
                max_skew_s=self.limits.max_skew_s,
                max_click_amount_minor=self.limits.max_click_amount_minor,
            ),
        )

    def register_reader(self, username: str, password: str) -> str:
        self._check_up("RegisterReader")
        if username in self.readers:
            raise AlreadyExists("username taken")
        reader_id = f"r-{len(self.readers) + 1}"
        self.readers[username] = (password, reader_id)
        self.balances[reader_id] = 10_000
        return reader_id

    def login(self, username: str, password: str) -> bpb.LoginResponse:
        self._check_up("Login")
        known = self.readers.get(username)
        if known is None or known[0] != password:
            raise Unauthenticated("wrong username or password")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = known[1]
        return bpb.LoginResponse(
            token=token, expires_at_ms=self.clock.now_ms() + DAY_MS, reader_id=known[1]
        )

    def buy_coin(self, token: str, req: bpb.BuyCoinRequest) -> bpb.BuyCoinResponse:
        with self.lock:
            self._check_up("BuyCoin")
            reader = self._reader(token)
            self.buy_requests.append(req)
            if self.fail_buy_before:
                raise self.fail_buy_before.pop(0)
            if req.request_id in self.sales:
                return self.sales[req.request_id]
            if req.ecoin_id in self.coins:
                raise AlreadyExists("ecoin id seen under another request id")
            u = req.unit_value_minor or 1
            amount = req.n * u
            if self.balances[reader] < amount:
                raise Insufficient("not enough money in the bank account")
            self.balances[reader] -= amount
            now = self.clock.now_ms()
            coin = self._add_coin(
                pb.Touchstone(
                    ecoin_id=req.ecoin_id,
                    root=req.root,
                    n=req.n,
                    unit_value_minor=u,
                    currency=req.currency or "EUR",
                    wallet_kind=req.wallet_kind,
                    owner=reader,
                    issued_at_ms=now,
                    expires_at_ms=now + 90 * DAY_MS,
                    broker_id=self.broker_id,
                )
            )
            reply = bpb.BuyCoinResponse(
                touchstone=coin.sealed, amount_minor=amount, currency=coin.touchstone.currency
            )
            self.sales[req.request_id] = reply
            if self.lose_buy_replies:
                self.lose_buy_replies -= 1
                raise BrokerUnavailable("UNAVAILABLE: the reply was lost")
            return reply

    def get_coin(self, token: str, ecoin_id: str) -> bpb.CoinStatus:
        self._check_up("GetCoin")
        reader = self._reader(token)
        coin = self.coins.get(ecoin_id)
        if coin is None or coin.touchstone.owner != reader:
            raise NotFound(f"no coin {ecoin_id}")
        return bpb.CoinStatus(
            touchstone=seal(coin.touchstone, self.key),
            state=bpb.COIN_STATE_HELD,
            latest_index=coin.latest_index,
            latest_word=coin.latest_word,
        )

    def list_coins(self, token: str) -> list[bpb.CoinStatus]:
        self._check_up("ListCoins")
        reader = self._reader(token)
        return [
            bpb.CoinStatus(touchstone=seal(coin.touchstone, self.key), state=bpb.COIN_STATE_FREE)
            for coin in self.coins.values()
            if coin.touchstone.owner == reader
        ]

    def _account(self, reader: str) -> bpb.GetAccountResponse:
        return bpb.GetAccountResponse(
            reader_id=reader,
            balances=[bpb.AccountBalance(currency="EUR", balance_minor=self.balances[reader])],
            limits=list(self.spending_limits.get(reader, {}).values()),
        )

    def get_account(self, token: str) -> bpb.GetAccountResponse:
        self._check_up("GetAccount")
        return self._account(self._reader(token))

    def history(self, token: str, request: bpb.HistoryRequest) -> bpb.HistoryResponse:
        self._check_up("History")
        self._reader(token)
        return bpb.HistoryResponse()

    def set_spending_limits(self, token: str, limit: bpb.SpendingLimit) -> bpb.GetAccountResponse:
        self._check_up("SetSpendingLimits")
        reader = self._reader(token)
        self.spending_limits.setdefault(reader, {})[limit.currency] = limit
        return self._account(reader)

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        """Both faces' GetVendorCertificate."""
        self._check_up("GetVendorCertificate")
        if vendor_id not in self.vendors:
            raise NotFound(f"no vendor {vendor_id}")
        return self.certificate(vendor_id)

    # -- the certificate book ----------------------------------------------------

    def certify(self, vendor_id: str, public_key: bytes, web_origin: str) -> None:
        """Issue the vendor a certificate now (the fake newspaper of the wallet tests)."""
        now = self.clock.now_ms()
        cert = pb.VendorCertificate(
            vendor_id=vendor_id,
            public_key=public_key,
            grpc_address="127.0.0.1:1",
            web_origin=web_origin,
            valid_until_ms=now + DAY_MS,
            broker_id=self.broker_id,
            display_name=vendor_id,
            issued_at_ms=now,
        )
        self.vendors[vendor_id] = VendorEntry(
            public_key, cert.grpc_address, web_origin, issued=seal(cert, self.key)
        )

    def enroll(self, vendor_id: str, key: SigningKey) -> str:
        """Book a vendor of the vendor tests; returns its (fake) gRPC address."""
        entry = VendorEntry(key.public_key, f"{vendor_id}.test:1", f"http://{vendor_id}.test")
        self.vendors[vendor_id] = entry
        return entry.grpc_address

    def certificate(self, vendor_id: str) -> pb.Envelope:
        entry = self.vendors[vendor_id]
        if entry.issued is not None:
            return entry.issued
        return seal(
            pb.VendorCertificate(
                vendor_id=vendor_id,
                public_key=entry.public_key,
                grpc_address=entry.grpc_address,
                web_origin=entry.web_origin,
                valid_until_ms=self.clock.now_ms() + DAY_MS,
                broker_id=self.broker_id,
            ),
            self.key,
        )

    def identity(self, vendor_id: str, key: SigningKey) -> VendorIdentity:
        return VendorIdentity(vendor_id, key, self.broker_id, self.key.public_key)

    # -- the vendors' face -------------------------------------------------------

    def client(self, vendor_id: str) -> FakeBrokerClient:
        """The ``BrokerClient`` of ``vendor_id``."""
        return FakeBrokerClient(self, vendor_id)

    def wallet_client(self, vendor_id: str) -> FakeWalletClient:
        """The ``BrokerClient`` and ``WalletBrokerClient`` of ``vendor_id``."""
        return FakeWalletClient(self, vendor_id)

    def issue(
        self, n: int = 100, *, unit_value: int = 1, currency: str = "EUR", expires_in_s: int = 86400
    ) -> Chain:
        """A coin the broker sold to "reader", with its chain (the vendor tests pay with it)."""
        chain = Chain.make(new_ecoin_id(), n, new_seed())
        now = self.clock.now_ms()
        touchstone = pb.Touchstone(
            ecoin_id=chain.ecoin_id.hex(),
            root=chain.root,
            n=n,
            unit_value_minor=unit_value,
            currency=currency,
            wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
            owner="reader",
            issued_at_ms=now,
            expires_at_ms=now + expires_in_s * 1000,
            broker_id=self.broker_id,
        )
        self._add_coin(touchstone, chain)
        return chain

    def wallet_code(self, ecoin_id: str, vendor_id: str) -> str:
        """A one-time code for ``vendor_id`` to exchange for a grant on the coin."""
        code = secrets.token_urlsafe(32)
        self.codes[code] = (ecoin_id, vendor_id)
        return code

    def hand_off_grant(self, ecoin_id: str, to_vendor: str) -> pb.Envelope:
        coin = self.coins[ecoin_id]
        assert coin.holder is not None
        return seal(
            pb.HandOffGrant(
                ecoin_id=ecoin_id,
                from_vendor=coin.holder,
                to_vendor=to_vendor,
                epoch=coin.epoch,
                expires_at_ms=self.clock.now_ms() + 30_000,
                broker_id=self.broker_id,
            ),
            self.key,
        )

    def move_elsewhere(self, ecoin_id: str, holder: str = "elsewhere") -> None:
        """The coin's epoch ends behind the holder's back (say a forced acquisition)."""
        coin = self.coins[ecoin_id]
        coin.epoch += 1
        coin.holder = holder

    # -- custody rules (what a vendor's client calls, as ``caller``) -------------------

    def _open_epoch(self, coin: FakeCoin, holder: str, index: int, word: bytes, how: str) -> None:
        coin.epoch += 1
        coin.holder = holder
        coin.latest_index, coin.latest_word = index, word
        coin.opened_by[coin.epoch] = how
        coin.grants[coin.epoch] = bpb.CustodyGrant(
            ecoin_id=coin.ecoin_id,
            epoch=coin.epoch,
            base_index=index,
            base_word=word,
            touchstone=coin.sealed,
            lease_ttl_s=self.limits.lease_ttl_s,
            max_skew_s=self.limits.max_skew_s,
            holder=holder,
        )

    def _coin(self, ecoin_id: str) -> FakeCoin:
        coin = self.coins.get(ecoin_id)
        if coin is None:
            raise NotFound("no such coin")
        return coin

    def _open_index(self, envelope: pb.Envelope) -> pb.CoinIndex:
        return open_envelope(envelope, pb.CoinIndex, lambda m: self.vendors[m.vendor_id].public_key)

    def _hashes_down(self, coin: FakeCoin, ci: pb.CoinIndex) -> bool:
        if ci.index == coin.latest_index:
            return ci.payword == coin.latest_word
        return ci.index > coin.latest_index and verify_word(
            coin.ecoin_bytes, coin.latest_index, coin.latest_word, ci.index, ci.payword, 10**6
        )

    def _hold_or_hand_off(self, coin: FakeCoin, caller: str) -> bpb.AcquireCoinResponse:
        """A free coin opens an epoch held by ``caller``; a held one asks for a hand-off."""
        if coin.holder is None:
            self._open_epoch(coin, caller, coin.latest_index, coin.latest_word, "acquire")
            return bpb.AcquireCoinResponse(custody=coin.grants[coin.epoch])
        return bpb.AcquireCoinResponse(
            handoff=bpb.HandOffRequired(
                grant=self.hand_off_grant(coin.ecoin_id, caller),
                holder_certificate=self.certificate(coin.holder),
                touchstone=coin.sealed,
            )
        )

    def acquire(self, caller: str, ecoin_id: str, j: int, w: bytes) -> bpb.AcquireCoinResponse:
        with self.lock:
            self._check_up("AcquireCoin")
            coin = self._coin(ecoin_id)
            if coin.holder == caller:
                return bpb.AcquireCoinResponse(custody=coin.grants[coin.epoch])
            if j <= coin.latest_index:
                raise AlreadySpent("spent", index=coin.latest_index, seen=seen_of(coin.latest_word))
            bound = self.limits.acquire_bound_units(100)
            if not verify_word(coin.ecoin_bytes, coin.latest_index, coin.latest_word, j, w, bound):
                raise BadPayword("proof does not verify")
            return self._hold_or_hand_off(coin, caller)

    def record_handoff(self, caller: str, envelope: pb.Envelope) -> bpb.CustodyGrant:
        with self.lock:
            self._check_up("RecordHandoff")
            ci = self._open_index(envelope)
            coin = self._coin(ci.ecoin_id)
            if (
                coin.holder == caller
                and ci.epoch == coin.epoch - 1
                and coin.opened_by.get(coin.epoch) == "handoff"
            ):
                return coin.grants[coin.epoch]
            if (
                ci.epoch != coin.epoch
                or ci.vendor_id != coin.holder
                or ci.to_vendor != caller
                or not self._hashes_down(coin, ci)
            ):
                raise PreconditionFailed("hand-off does not match the current epoch")
            self._open_epoch(coin, caller, ci.index, ci.payword, "handoff")
            return coin.grants[coin.epoch]

    def reclaim(
        self, caller: str, ecoin_id: str, epoch: int, envelope: pb.Envelope
    ) -> bpb.CustodyGrant:
        with self.lock:
            self._check_up("Reclaim")
            coin = self._coin(ecoin_id)
            if (
                coin.holder == caller
                and coin.epoch == epoch + 1
                and coin.opened_by.get(coin.epoch) == "reclaim"
            ):
                return coin.grants[coin.epoch]
            ci = self._open_index(envelope)
            if epoch != coin.epoch or coin.holder != caller or ci.vendor_id != caller:
                raise PreconditionFailed("the epoch is closed")
            if not self._hashes_down(coin, ci):
                raise PreconditionFailed("index does not hash down")
            self._open_epoch(coin, caller, ci.index, ci.payword, "reclaim")
            return coin.grants[coin.epoch]

    def checkpoint(self, caller: str, envelopes: Sequence[pb.Envelope]) -> bpb.CheckpointResponse:
        with self.lock:
            self._check_up("Checkpoint")
            reply = bpb.CheckpointResponse(
                lease_ttl_s=self.limits.lease_ttl_s, max_skew_s=self.limits.max_skew_s
            )
            for envelope in envelopes:
                ci = self._open_index(envelope)
                coin = self._coin(ci.ecoin_id)
                result = reply.results.add(ecoin_id=ci.ecoin_id, epoch=ci.epoch)
                if coin.holder != caller or coin.epoch != ci.epoch:
                    result.status = bpb.CHECKPOINT_STATUS_CLOSED
                    result.acknowledged_index = coin.latest_index
                elif coin.frozen:
                    result.status = bpb.CHECKPOINT_STATUS_REJECTED
                    result.detail = "revoked: the coin is frozen"
                    result.revoked = True
                elif not self._hashes_down(coin, ci):
                    result.status = bpb.CHECKPOINT_STATUS_REJECTED
                    result.acknowledged_index = coin.latest_index
                else:
                    coin.latest_index, coin.latest_word = ci.index, ci.payword
                    result.status = bpb.CHECKPOINT_STATUS_LEASED
                    result.acknowledged_index = ci.index
            return reply
