"""The vendor's gRPC servicer (``netpay.v1.Vendor``): GetInfo and HandOff
(whose reply carries the WindowCredit when the hand-off closed a window).

Thin: verify the vendor-to-vendor call signature (the caller's key comes
from its broker-signed certificate, cached), call one use case, map errors
with ``maps_errors``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc

from netpay.clock import Clock
from netpay.errors import PermissionDenied, Unavailable
from netpay.transport.auth import verify_call
from netpay.transport.status import maps_errors
from netpay.v1 import statements_pb2 as pb
from netpay.v1 import vendor_pb2, vendor_pb2_grpc
from vendor.peer_client import HANDOFF_METHOD
from vendor.services import VendorServices

__all__ = ["SERVICE_NAME", "RpcDeps", "VendorServicer"]

SERVICE_NAME = "netpay.v1.Vendor"


@dataclass(frozen=True)
class RpcDeps:
    services: VendorServices
    certificate: pb.Envelope  # this vendor's current Envelope(VendorCertificate)
    clock: Clock


class VendorServicer(vendor_pb2_grpc.VendorServicer):
    """Serves other vendors. Built before registration (the bound port is
    needed to register); answers UNAVAILABLE until :meth:`attach`."""

    def __init__(self, deps: RpcDeps | None = None) -> None:
        self._lock = threading.Lock()
        self._deps = deps

    def attach(self, deps: RpcDeps) -> None:
        with self._lock:
            self._deps = deps

    def register(self, server: grpc.Server) -> None:
        vendor_pb2_grpc.add_VendorServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def _get(self) -> RpcDeps:
        with self._lock:
            deps = self._deps
        if deps is None:
            raise Unavailable("the vendor is starting")
        return deps

    @maps_errors
    def GetInfo(  # noqa: N802 (gRPC method name)
        self, request: vendor_pb2.VendorGetInfoRequest, context: grpc.ServicerContext
    ) -> vendor_pb2.VendorInfo:
        deps = self._get()
        return vendor_pb2.VendorInfo(
            vendor_id=deps.services.vendor_id,
            certificate=deps.certificate,
            broker_id=deps.services.broker_id,
        )

    @maps_errors
    def HandOff(  # noqa: N802 (gRPC method name)
        self, request: vendor_pb2.HandOffRequest, context: grpc.ServicerContext
    ) -> vendor_pb2.HandOffResponse:
        deps = self._get()
        services = deps.services
        caller = verify_call(
            context.invocation_metadata(),
            HANDOFF_METHOD,
            request,
            now_ms=deps.clock.now_ms(),
            max_skew_s=services.limits.max_skew_s,
            key_for=services.certificates.public_key,
        )
        if caller == services.vendor_id:
            raise PermissionDenied("a vendor cannot hand a coin to itself")
        result = services.hand_off_with_credit(request.grant, caller, deps.clock.now_ms())
        reply = vendor_pb2.HandOffResponse(coin_index=result.coin_index)
        if result.window_credit is not None:
            reply.window_credit.CopyFrom(result.window_credit)
        return reply
