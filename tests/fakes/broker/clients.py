"""The vendors' face of the fake broker: one client a vendor.

:class:`FakeBrokerClient` is ``vendor.services.BrokerClient`` for one vendor
(``broker.client(vendor_id)``); :class:`FakeWalletClient` adds the
server-side wallet RPCs of ``WalletBrokerClient``
(``broker.wallet_client(vendor_id)``). The vendor checks which protocol its
client implements, so a plain vendor's client has no wallet RPCs. Both call
the one :class:`~tests.fakes.broker.model.FakeBroker` as that vendor.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from netpay.envelope import open_envelope, seal
from netpay.errors import (
    BrokerUnavailable,
    CoinBusy,
    Insufficient,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

if TYPE_CHECKING:
    from tests.fakes.broker.model import FakeBroker

__all__ = ["FakeBrokerClient", "FakeWalletClient"]


class FakeBrokerClient:
    """``BrokerClient`` for one vendor over the shared FakeBroker."""

    def __init__(self, broker: FakeBroker, vendor_id: str) -> None:
        self.broker = broker
        self.vendor_id = vendor_id
        self.forced = 0  # forced acquisitions asked for (this fake never recalls)

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        return self.broker.get_vendor_certificate(vendor_id)

    def acquire_coin(
        self,
        ecoin_id: str,
        proof_index: int,
        proof_word: bytes,
        *,
        force: bool = False,
        currency: str = "",
    ) -> bpb.AcquireCoinResponse:
        self.forced += int(force)
        return self.broker.acquire(self.vendor_id, ecoin_id, proof_index, proof_word)

    def record_handoff(
        self, coin_index: pb.Envelope, window_credit: pb.Envelope | None = None
    ) -> bpb.CustodyGrant:
        if window_credit is not None:
            self.broker.window_credits.append(window_credit)
        return self.broker.record_handoff(self.vendor_id, coin_index)

    def reclaim(self, ecoin_id: str, epoch: int, coin_index: pb.Envelope) -> bpb.CustodyGrant:
        return self.broker.reclaim(self.vendor_id, ecoin_id, epoch, coin_index)

    def checkpoint(self, indexes: Sequence[pb.Envelope]) -> bpb.CheckpointResponse:
        return self.broker.checkpoint(self.vendor_id, indexes)


class FakeWalletClient(FakeBrokerClient):
    """The wallet RPCs of one vendor over the shared FakeBroker, with knobs per vendor."""

    def __init__(self, broker: FakeBroker, vendor_id: str) -> None:
        super().__init__(broker, vendor_id)
        self.draws: list[tuple[int, int]] = []
        self.lose_next_draw = False
        self.wrong_word = False
        self.busy = False
        # Runs once at the start of the next draw, before it is recorded: a twin
        # request (another worker) that draws and commits first.
        self.twin: Callable[[], object] | None = None

    def exchange_wallet_code(self, code: str) -> bpb.ExchangeWalletCodeResponse:
        b = self.broker
        found = b.codes.get(code)
        if found is None or found[1] != self.vendor_id:
            raise NotFound("no such code")
        del b.codes[code]
        coin = b.coins[found[0]]
        grant = seal(
            pb.WalletGrant(
                grant_id=secrets.token_hex(16),
                ecoin_id=found[0],
                vendor_id=self.vendor_id,
                max_units=coin.touchstone.n - coin.latest_index,
                expires_at_ms=coin.touchstone.expires_at_ms,
                broker_id=b.broker_id,
                issued_at_ms=b.clock.now_ms(),
            ),
            b.key,
        )
        return bpb.ExchangeWalletCodeResponse(
            grant=grant, touchstone=coin.sealed, latest_index=coin.latest_index
        )

    def _grant(self, envelope: pb.Envelope, ecoin_id: str | None = None) -> pb.WalletGrant:
        grant = open_envelope(envelope, pb.WalletGrant, self.broker.key.public_key)
        if grant.vendor_id != self.vendor_id or (
            ecoin_id is not None and grant.ecoin_id != ecoin_id
        ):
            raise PermissionDenied("not your grant")
        return grant

    def acquire_coin_with_grant(
        self, ecoin_id: str, wallet_grant: pb.Envelope, *, force: bool = False
    ) -> bpb.AcquireCoinResponse:
        b = self.broker
        with b.lock:
            b._check_up("AcquireCoin")
            self._grant(wallet_grant, ecoin_id)
            coin = b._coin(ecoin_id)
            if coin.holder == self.vendor_id:
                return bpb.AcquireCoinResponse(custody=coin.grants[coin.epoch])
            return b._hold_or_hand_off(coin, self.vendor_id)

    def draw_window(
        self, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> bpb.DrawWindowResponse:
        b = self.broker
        with b.lock:
            b._check_up("DrawWindow")
            grant = self._grant(wallet_grant)
            if self.twin is not None:
                twin, self.twin = self.twin, None
                twin()
            coin = b._coin(grant.ecoin_id)
            if self.busy:
                raise CoinBusy("a hand-off grant was issued", retry_after_s=30)
            if coin.holder != self.vendor_id or coin.epoch != epoch:
                raise PreconditionFailed("not the holder")
            if units > coin.touchstone.n - coin.latest_index:
                raise Insufficient("not enough words")
            start, top = coin.latest_index, coin.latest_index + units
            coin.latest_index, coin.latest_word = top, coin.word(top)
            self.draws.append((start, top))
            if self.lose_next_draw:
                self.lose_next_draw = False
                raise BrokerUnavailable("UNAVAILABLE: the reply was lost")
            return bpb.DrawWindowResponse(
                ecoin_id=grant.ecoin_id,
                epoch=epoch,
                from_index=start,
                to_index=top,
                payword=coin.word(top - 1) if self.wrong_word else coin.word(top),
                touchstone=coin.sealed,
                grant_units_left=grant.max_units,
            )
