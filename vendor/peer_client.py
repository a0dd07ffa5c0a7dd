"""Signed calls to other vendors (``Vendor.HandOff``).

Until mutual TLS exists, a vendor-to-vendor call carries ``netpay-caller``,
``netpay-time-ms`` and ``netpay-signature`` metadata made with this
vendor's certified key (``netpay.transport.auth.sign_call``).
"""

from __future__ import annotations

import threading
from typing import Any

import grpc

from netpay.clock import Clock
from netpay.envelope import SigningKey
from netpay.errors import Unavailable
from netpay.transport.auth import sign_call
from netpay.transport.server import channel_options, split_host_port
from netpay.transport.status import from_rpc_error
from netpay.v1 import statements_pb2 as pb
from netpay.v1 import vendor_pb2, vendor_pb2_grpc
from vendor.services import HandOffResult

__all__ = ["HANDOFF_METHOD", "GrpcPeerClient"]

HANDOFF_METHOD = "/netpay.v1.Vendor/HandOff"
_MAX_CHANNELS = 64


class GrpcPeerClient:
    """Implements ``vendor.services.PeerClient``; one cached channel per address."""

    def __init__(
        self, vendor_id: str, key: SigningKey, clock: Clock, *, timeout_s: float = 5.0
    ) -> None:
        self._vendor_id = vendor_id
        self._key = key
        self._clock = clock
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}

    def _stub(self, address: str) -> Any:
        split_host_port(address)
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                if len(self._channels) >= _MAX_CHANNELS:
                    for old in self._channels.values():
                        old.close()
                    self._channels.clear()
                channel = grpc.insecure_channel(address, options=channel_options())
                self._channels[address] = channel
        return vendor_pb2_grpc.VendorStub(channel)  # type: ignore[no-untyped-call]

    def hand_off(self, address: str, grant: pb.Envelope) -> HandOffResult:
        request = vendor_pb2.HandOffRequest(grant=grant)
        metadata = sign_call(
            self._key, self._vendor_id, HANDOFF_METHOD, request, self._clock.now_ms()
        )
        try:
            reply = self._stub(address).HandOff(request, metadata=metadata, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, unavailable=Unavailable) from None
        assert isinstance(reply, vendor_pb2.HandOffResponse)
        credit = reply.window_credit if reply.HasField("window_credit") else None
        return HandOffResult(reply.coin_index, credit)

    def get_info(self, address: str) -> vendor_pb2.VendorInfo:
        try:
            reply = self._stub(address).GetInfo(
                vendor_pb2.VendorGetInfoRequest(), timeout=self._timeout_s
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, unavailable=Unavailable) from None
        assert isinstance(reply, vendor_pb2.VendorInfo)
        return reply

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
