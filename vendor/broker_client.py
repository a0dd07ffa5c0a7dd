"""The vendor's gRPC client to the broker.

Vendor calls carry ``authorization: Bearer <vendor token>``; every failed
call becomes a typed NetPayError (an unreachable broker is
:class:`BrokerUnavailable`); every call has a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from netpay.errors import BrokerUnavailable, InvalidArgument
from netpay.transport.auth import bearer_metadata
from netpay.transport.server import channel_options, split_host_port
from netpay.transport.status import from_rpc_error
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

__all__ = ["DEFAULT_TIMEOUT_S", "GrpcBrokerClient"]

DEFAULT_TIMEOUT_S = 5.0
REDEEM_TIMEOUT_S = 120.0
R = TypeVar("R", bound=Message)


class GrpcBrokerClient:
    """Implements ``vendor.services.BrokerClient`` over a gRPC channel.

    The channel is made on first use, so a client built before a fork (the
    gunicorn master) is safe as long as no call was made there.
    """

    def __init__(
        self, address: str, *, token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        split_host_port(address)
        self.address = address
        self.token = token
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: Any = None

    def _broker(self) -> Any:
        with self._lock:
            if self._stub is None:
                self._channel = grpc.insecure_channel(self.address, options=channel_options())
                self._stub = broker_pb2_grpc.BrokerStub(self._channel)  # type: ignore[no-untyped-call]
            return self._stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._stub = None

    def _call(
        self,
        name: str,
        request: Message,
        reply_type: type[R],
        *,
        authenticated: bool = True,
        timeout_s: float | None = None,
    ) -> R:
        metadata: list[tuple[str, str]] = []
        if authenticated:
            if not self.token:
                raise InvalidArgument("the vendor has no broker token yet")
            metadata = bearer_metadata(self.token)
        method = getattr(self._broker(), name)
        try:
            reply = method(request, metadata=metadata, timeout=timeout_s or self._timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, unavailable=BrokerUnavailable) from None
        if not isinstance(reply, reply_type):  # pragma: no cover - generated code guarantees it
            raise BrokerUnavailable(f"unexpected reply type from Broker.{name}")
        return reply

    # -- identity --------------------------------------------------------------

    def get_info(self) -> broker_pb2.BrokerInfo:
        return self._call(
            "GetInfo", broker_pb2.GetInfoRequest(), broker_pb2.BrokerInfo, authenticated=False
        )

    def register_vendor(
        self, request: broker_pb2.RegisterVendorRequest
    ) -> broker_pb2.RegisterVendorResponse:
        """Enrollment (the request carries the enrollment token) or, later,
        re-registration with the bearer vendor token."""
        return self._call(
            "RegisterVendor",
            request,
            broker_pb2.RegisterVendorResponse,
            authenticated=not request.enrollment_token,
        )

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        reply = self._call(
            "GetVendorCertificate",
            broker_pb2.GetVendorCertificateRequest(vendor_id=vendor_id),
            broker_pb2.GetVendorCertificateResponse,
            authenticated=False,
        )
        return reply.certificate

    # -- custody ---------------------------------------------------------------

    def acquire_coin(
        self,
        ecoin_id: str,
        proof_index: int,
        proof_word: bytes,
        *,
        force: bool = False,
        currency: str = "",
    ) -> broker_pb2.AcquireCoinResponse:
        return self._call(
            "AcquireCoin",
            broker_pb2.AcquireCoinRequest(
                ecoin_id=ecoin_id,
                proof_index=proof_index,
                proof_word=proof_word,
                force=force,
                currency=currency,
            ),
            broker_pb2.AcquireCoinResponse,
        )

    def record_handoff(
        self, coin_index: pb.Envelope, window_credit: pb.Envelope | None = None
    ) -> broker_pb2.CustodyGrant:
        return self._call(
            "RecordHandoff",
            broker_pb2.RecordHandoffRequest(coin_index=coin_index, window_credit=window_credit),
            broker_pb2.CustodyGrant,
        )

    def redeem(self, request: broker_pb2.RedeemRequest) -> broker_pb2.RedeemResponse:
        """``Broker.Redeem``: a batch may take the broker seconds of hashing."""
        return self._call("Redeem", request, broker_pb2.RedeemResponse, timeout_s=REDEEM_TIMEOUT_S)

    def reclaim(
        self, ecoin_id: str, epoch: int, coin_index: pb.Envelope
    ) -> broker_pb2.CustodyGrant:
        return self._call(
            "Reclaim",
            broker_pb2.ReclaimRequest(ecoin_id=ecoin_id, epoch=epoch, coin_index=coin_index),
            broker_pb2.CustodyGrant,
        )

    def checkpoint(self, indexes: Sequence[pb.Envelope]) -> broker_pb2.CheckpointResponse:
        return self._call(
            "Checkpoint",
            broker_pb2.CheckpointRequest(indexes=list(indexes)),
            broker_pb2.CheckpointResponse,
        )

    def get_coin(self, ecoin_id: str) -> broker_pb2.CoinStatus:
        return self._call(
            "GetCoin", broker_pb2.GetCoinRequest(ecoin_id=ecoin_id), broker_pb2.CoinStatus
        )

    # -- server-side wallets -----------------------------------------------------

    def exchange_wallet_code(self, code: str) -> broker_pb2.ExchangeWalletCodeResponse:
        return self._call(
            "ExchangeWalletCode",
            broker_pb2.ExchangeWalletCodeRequest(code=code),
            broker_pb2.ExchangeWalletCodeResponse,
        )

    def acquire_coin_with_grant(
        self, ecoin_id: str, wallet_grant: pb.Envelope, *, force: bool = False
    ) -> broker_pb2.AcquireCoinResponse:
        return self._call(
            "AcquireCoin",
            broker_pb2.AcquireCoinRequest(
                ecoin_id=ecoin_id, wallet_grant=wallet_grant, force=force
            ),
            broker_pb2.AcquireCoinResponse,
        )

    def draw_window(
        self, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> broker_pb2.DrawWindowResponse:
        return self._call(
            "DrawWindow",
            broker_pb2.DrawWindowRequest(wallet_grant=wallet_grant, epoch=epoch, units=units),
            broker_pb2.DrawWindowResponse,
        )
