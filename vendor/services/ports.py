"""What the vendor's use cases need from outside: the broker, the other
vendors, the database, and who this vendor is.

Talking to the broker and to other vendors goes through the
:class:`BrokerClient`, :class:`WalletBrokerClient`, :class:`RedeemClient` and
:class:`PeerClient` protocols, so unit tests use fakes and production uses
gRPC (``vendor.broker_client``, ``vendor.peer_client``). The database is a
:class:`UnitOfWorkFactory` yielding a :class:`vendor.storage.VendorUnit` per
block. :class:`VendorPorts` bundles what every area of the services shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from netpay.clock import Clock
from netpay.envelope import SigningKey
from netpay.limits import Limits
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from vendor.storage import VendorUnit

__all__ = [
    "BrokerClient",
    "HandOffResult",
    "PeerClient",
    "RedeemClient",
    "UnitOfWorkFactory",
    "VendorIdentity",
    "VendorPorts",
    "WalletBrokerClient",
]


class UnitOfWorkFactory(Protocol):
    """``netpay.sqlstore.UnitOfWork(engine, VendorUnit)``: a transaction per call;
    reads may skip the write lock."""

    def __call__(self, *, read_only: bool = False) -> AbstractContextManager[VendorUnit]: ...


class BrokerClient(Protocol):
    """The broker RPCs the vendor's use cases need (vendor-authenticated).

    Every method raises a typed NetPayError; an unreachable broker is
    :class:`netpay.errors.BrokerUnavailable`.
    """

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope: ...

    def acquire_coin(
        self,
        ecoin_id: str,
        proof_index: int,
        proof_word: bytes,
        *,
        force: bool = False,
        currency: str = "",
    ) -> broker_pb2.AcquireCoinResponse: ...

    def record_handoff(
        self, coin_index: pb.Envelope, window_credit: pb.Envelope | None = None
    ) -> broker_pb2.CustodyGrant: ...

    def reclaim(
        self, ecoin_id: str, epoch: int, coin_index: pb.Envelope
    ) -> broker_pb2.CustodyGrant: ...

    def checkpoint(self, indexes: Sequence[pb.Envelope]) -> broker_pb2.CheckpointResponse: ...


@runtime_checkable
class WalletBrokerClient(Protocol):
    """The broker RPCs of server-side wallets (vendor-authenticated)."""

    def exchange_wallet_code(self, code: str) -> broker_pb2.ExchangeWalletCodeResponse: ...

    def acquire_coin_with_grant(
        self, ecoin_id: str, wallet_grant: pb.Envelope, *, force: bool = False
    ) -> broker_pb2.AcquireCoinResponse: ...

    def draw_window(
        self, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> broker_pb2.DrawWindowResponse: ...


class RedeemClient(Protocol):
    """``Broker.Redeem``: a batch id the broker has seen answers with its first reply."""

    def redeem(self, request: broker_pb2.RedeemRequest) -> broker_pb2.RedeemResponse: ...


@dataclass(frozen=True)
class HandOffResult:
    """``Vendor.HandOff``'s reply: the CoinIndex and, when the hand-off closed
    a window, its WindowCredit."""

    coin_index: pb.Envelope
    window_credit: pb.Envelope | None


class PeerClient(Protocol):
    """Calls to another vendor's gRPC service, signed as this vendor."""

    def hand_off(self, address: str, grant: pb.Envelope) -> HandOffResult:
        """``Vendor.HandOff(grant)`` at ``address``: Envelope(CoinIndex) and the
        Envelope(WindowCredit) of the window it closed, if any."""
        ...


@dataclass(frozen=True)
class VendorIdentity:
    vendor_id: str
    key: SigningKey
    broker_id: str
    broker_public_key: bytes


@dataclass(frozen=True)
class VendorPorts:
    """The collaborators every area of the vendor's services shares."""

    uow: UnitOfWorkFactory
    identity: VendorIdentity
    broker: BrokerClient
    peers: PeerClient
    limits: Limits
    clock: Clock
