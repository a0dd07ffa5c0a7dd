"""The reader's coins: buy, resume, resync, balances and history.

Use cases: ``buy`` a client-side coin (the chain is stored, state
``pending``, before BuyCoin is sent; a pending coin with the same terms is
retried with its request id), ``buy_server_side`` (the broker makes and
keeps the chain), ``resume_pending`` purchases, ``coins``,
``bank_balances``, ``history`` (the receipts kept here) and
``broker_history`` (the money history kept at the broker). Paying moves a
coin up to a vendor's index (:meth:`Coins.resync`: when the refusal's
``seen`` is SHA-256("NP1-seen" || the coin's own word there)) or to the
broker's (:meth:`Coins.settle_from_broker`: when the broker's word is the
coin's own); never down.
"""

from __future__ import annotations

import secrets

from ewallet_client.broker_client import BrokerApi
from ewallet_client.domain import CoinEvent, CoinState, CoinView, check_touchstone
from ewallet_client.store import PEBBLE_EVERY, NewCoin, PendingCoin, ranges
from ewallet_client.wallet.ports import WalletPorts, log
from netpay.chain import MAX_CHAIN_UNITS, Chain, new_ecoin_id, new_seed, seen_of
from netpay.encoding import check_currency, check_ecoin_id
from netpay.envelope import open_envelope
from netpay.errors import (
    BrokerUnavailable,
    CoinBusy,
    Conflict,
    InvalidArgument,
    NetPayError,
    SignatureInvalid,
    Unauthenticated,
    Unavailable,
)
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb

__all__ = ["MAX_UNIT_VALUE_MINOR", "Coins", "new_coin"]

MAX_UNIT_VALUE_MINOR = 2**32 - 1


def _sale_refused(err: NetPayError) -> bool:
    """True when BuyCoin's error means the broker sold nothing, for good.

    Transport failures, expired logins and unknown errors leave the coin
    pending: the sale may have happened, and the same request id will tell.
    """
    if isinstance(err, Unavailable | BrokerUnavailable | Unauthenticated | CoinBusy | Conflict):
        return False
    return type(err) is not NetPayError


def new_coin(units: int, unit_value_minor: int, currency: str) -> NewCoin:
    """A fresh chain (seed, pebbles) and request id for a coin not yet stored."""
    ecoin = new_ecoin_id()
    seed = new_seed()
    chain = Chain.make(ecoin, units, seed, pebble_every=PEBBLE_EVERY)
    return NewCoin(
        ecoin_id=ecoin.hex(),
        request_id=secrets.token_hex(16),
        seed=seed,
        n=units,
        unit_value_minor=unit_value_minor,
        currency=currency,
        pebbles=chain.pebbles,
    )


class Coins:
    """Buying, holding and resyncing the wallet's coins."""

    def __init__(self, ports: WalletPorts) -> None:
        self._ports = ports
        self._uow = ports.uow
        self._link = ports.link

    def buy(self, units: int, unit_value_minor: int = 1, currency: str = "EUR") -> CoinView:
        """Buy a client-side coin of ``units`` words worth ``unit_value_minor`` each.

        The chain is stored (state ``pending``) before BuyCoin is sent; a
        pending coin with the same terms is retried with its request id.
        """
        self.check_coin_terms(units, unit_value_minor, currency)
        token = self._link.token()
        client = self._link.broker()
        with self._uow() as unit:
            pending = next(
                (
                    p
                    for p in unit.coins.pending()
                    if (p.n, p.unit_value_minor, p.currency) == (units, unit_value_minor, currency)
                ),
                None,
            )
        if pending is None:
            coin = new_coin(units, unit_value_minor, currency)
            with self._uow() as unit:
                pending = unit.coins.insert_pending(coin, self._ports.clock.now_ms())
                unit.commit()
            self._ports.keep_private()
        else:
            log.info("retrying the purchase of pending coin %s", pending.ecoin_id)
        return self.complete_purchase(client, token, pending)

    def check_coin_terms(self, units: int, unit_value_minor: int, currency: str) -> None:
        """The terms of a client-side coin the broker would sell (``invalid_argument``)."""
        top = min(MAX_CHAIN_UNITS, self._link.settings().max_chain_units)
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= top:
            raise InvalidArgument(f"units must be 1..{top}")
        if (
            isinstance(unit_value_minor, bool)
            or not isinstance(unit_value_minor, int)
            or not 1 <= unit_value_minor <= MAX_UNIT_VALUE_MINOR
        ):
            raise InvalidArgument("unit value must be a positive number of minor units")
        check_currency(currency)

    def buy_server_side(
        self,
        units: int,
        wallet_password: str,
        unit_value_minor: int = 1,
        currency: str = "EUR",
    ) -> dict[str, object]:
        """Buy a server-side coin: the broker makes the chain and keeps it (encrypted).

        The wallet keeps nothing of it (no seed, no password): the reader
        signs in with the printed e-coin id and the wallet password at a
        newspaper. A lost reply is retried once with the same request id (the
        broker answers a replay with the first coin and charges once).
        Returns the coin as JSON-ready fields.
        """
        top = min(MAX_CHAIN_UNITS, self._link.settings().max_chain_units)
        if not 1 <= units <= top:
            raise InvalidArgument(f"units must be 1..{top}")
        if not 1 <= unit_value_minor <= MAX_UNIT_VALUE_MINOR:
            raise InvalidArgument("unit value must be a positive number of minor units")
        if not 8 <= len(wallet_password) <= 256:
            raise InvalidArgument("the wallet password must have 8..256 characters")
        check_currency(currency)
        token = self._link.token()
        client = self._link.broker()
        request = broker_pb2.BuyCoinRequest(
            request_id=secrets.token_hex(16),
            n=units,
            unit_value_minor=unit_value_minor,
            currency=currency,
            wallet_kind=pb.WALLET_KIND_SERVER_SIDE,
            wallet_password=wallet_password,
        )
        try:
            resp = client.buy_coin(token, request)
        except BrokerUnavailable:
            resp = client.buy_coin(token, request)
        touchstone = self._server_side_touchstone(resp, request)
        return {
            "ecoin_id": touchstone.ecoin_id,
            "wallet_kind": "server_side",
            "n": touchstone.n,
            "unit_value_minor": touchstone.unit_value_minor,
            "currency": touchstone.currency,
            "value_minor": touchstone.n * touchstone.unit_value_minor,
            "amount_minor": resp.amount_minor,
            "issued_at_ms": touchstone.issued_at_ms,
            "expires_at_ms": touchstone.expires_at_ms,
            "broker_id": touchstone.broker_id,
        }

    def _server_side_touchstone(
        self, resp: broker_pb2.BuyCoinResponse, request: broker_pb2.BuyCoinRequest
    ) -> pb.Touchstone:
        """The broker's touchstone for a server-side coin, checked against the request."""
        st = self._link.settings()
        assert st.broker_public_key is not None and st.broker_id is not None
        touchstone = open_envelope(resp.touchstone, pb.Touchstone, st.broker_public_key)
        problems = [
            name
            for name, ok in (
                ("broker id", touchstone.broker_id == st.broker_id),
                ("ecoin id", touchstone.ecoin_id == resp.ecoin_id and len(resp.ecoin_id) == 32),
                ("n", touchstone.n == request.n),
                ("unit value", touchstone.unit_value_minor == request.unit_value_minor),
                ("currency", touchstone.currency == request.currency),
                ("wallet kind", touchstone.wallet_kind == pb.WALLET_KIND_SERVER_SIDE),
                ("owner", not st.reader_id or touchstone.owner == st.reader_id),
                ("expiry", touchstone.expires_at_ms > self._ports.clock.now_ms()),
            )
            if not ok
        ]
        if problems:
            raise SignatureInvalid(f"the touchstone differs in: {', '.join(problems)}")
        return touchstone

    def resume_pending(self) -> list[CoinView]:
        """Retry BuyCoin for every pending coin (same request ids)."""
        token = self._link.token()
        client = self._link.broker()
        with self._uow() as unit:
            pending = unit.coins.pending()
        return [self.complete_purchase(client, token, p) for p in pending]

    def complete_purchase(self, client: BrokerApi, token: str, coin: PendingCoin) -> CoinView:
        """BuyCoin for a stored pending coin; the touchstone is checked, the coin active."""
        request = broker_pb2.BuyCoinRequest(
            request_id=coin.request_id,
            ecoin_id=coin.ecoin_id,
            root=coin.root,
            n=coin.n,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
        )
        try:
            resp = client.buy_coin(token, request)
        except NetPayError as err:
            if _sale_refused(err):
                with self._uow() as unit:
                    unit.coins.change_state(coin.ecoin_id, CoinEvent.REFUSED)
                    unit.commit()
            raise
        st = self._link.settings()
        assert st.broker_public_key is not None and st.broker_id is not None
        touchstone = open_envelope(resp.touchstone, pb.Touchstone, st.broker_public_key)
        check_touchstone(
            touchstone,
            broker_id=st.broker_id,
            ecoin_id=coin.ecoin_id,
            root=coin.root,
            n=coin.n,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            owner=st.reader_id,
            now_ms=self._ports.clock.now_ms(),
        )
        if resp.amount_minor and resp.amount_minor != coin.n * coin.unit_value_minor:
            log.warning(
                "the broker charged %d for coin %s worth %d",
                resp.amount_minor,
                coin.ecoin_id,
                coin.n * coin.unit_value_minor,
            )
        with self._uow() as unit:
            active = unit.coins.change_state(
                coin.ecoin_id,
                CoinEvent.SOLD,
                touchstone=resp.touchstone.SerializeToString(),
                expires_at_ms=touchstone.expires_at_ms,
            )
            unit.commit()
            return active

    def coin(self, ecoin_id: str) -> CoinView:
        with self._uow() as unit:
            return unit.coins.get(ecoin_id)

    def word(self, ecoin_id: str, j: int) -> bytes:
        """``w[j]`` of a coin (the payword an index stands for)."""
        with self._uow() as unit:
            return unit.coins.word(ecoin_id, j)

    def coins(self) -> list[CoinView]:
        """Every coin not abandoned: words and value left, currency, expiry, last vendor."""
        with self._uow() as unit:
            coins = unit.coins.all()
        return [c for c in coins if c.state is not CoinState.ABANDONED]

    def bank_balances(self) -> list[dict[str, object]]:
        """The reader's bank balances at the broker (GetAccount)."""
        resp = self._link.broker().get_account(self._link.token())
        return [{"currency": b.currency, "balance_minor": b.balance_minor} for b in resp.balances]

    def history(self) -> list[dict[str, object]]:
        """Every receipt the wallet verified, oldest first."""
        with self._uow() as unit:
            return unit.receipts.all_json()

    def broker_history(self, *, ecoin_id: str = "", limit: int = 100) -> list[dict[str, object]]:
        """The reader's money history at the broker, newest first: purchases, the clicks
        vendors redeemed, window credits, vendor refunds and expiry refunds."""
        if ecoin_id:
            check_ecoin_id(ecoin_id)
        reply = self._link.broker().history(
            self._link.token(), broker_pb2.HistoryRequest(ecoin_id=ecoin_id, limit=limit)
        )
        return [
            {
                "time_ms": e.time_ms,
                "kind": e.kind,
                "ecoin_id": e.ecoin_id,
                "vendor_id": e.vendor_id,
                "item_id": e.item_id,
                "epoch": e.epoch,
                "from_index": e.from_index,
                "to_index": e.to_index,
                "amount_minor": e.amount_minor,
                "currency": e.currency,
            }
            for e in reply.entries
        ]

    def settle_from_broker(self, ecoin_id: str) -> None:
        """Settle the headers at or below the broker's latest known word of the coin.

        The broker's word is checked against the wallet's own chain; when it
        is above the wallet's index (a copy of the wallet spent), the wallet
        moves up to it. Best effort: an unreachable broker changes nothing.
        """
        try:
            status = self._link.broker().get_coin(self._link.token(), ecoin_id)
        except NetPayError as err:
            log.debug("cannot ask the broker about coin %s: %s", ecoin_id, err.detail)
            return
        coin = self.coin(ecoin_id)
        latest = status.latest_index
        if 0 < latest <= coin.n and secrets.compare_digest(
            self.word(ecoin_id, latest), status.latest_word
        ):
            self._move_up(ecoin_id, latest)

    def resync(self, ecoin_id: str, err: NetPayError) -> None:
        """Move up to the vendor's index, only if its ``seen`` is that of this coin's
        own word there: a vendor cannot push the wallet forward with a made-up index."""
        assert err.index is not None and err.seen is not None
        coin = self.coin(ecoin_id)
        if err.index > coin.n or not secrets.compare_digest(
            seen_of(self.word(ecoin_id, err.index)), err.seen
        ):
            raise type(err)(
                f"{err.detail} (the vendor's index {err.index} does not match this "
                "coin's word there: not moving the wallet)",
                index=err.index,
            )
        if self._move_up(ecoin_id, err.index):
            self._ports.notes.warn(
                f"coin {ecoin_id} was spent up to {err.index} elsewhere; paying from there"
            )

    def _move_up(self, ecoin_id: str, index: int) -> bool:
        with self._uow() as unit:
            moved = ranges.resync(unit, ecoin_id, index)
            unit.commit()
            return moved
