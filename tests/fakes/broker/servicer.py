"""The fake broker behind a real gRPC server (the wallet's BrokerClient and CLI)."""

from __future__ import annotations

from typing import Any

import grpc

from netpay.transport.auth import bearer_token
from netpay.transport.status import maps_errors
from netpay.v1 import broker_pb2, broker_pb2_grpc
from tests.fakes.broker.model import FakeBroker

__all__ = ["FakeBrokerServicer"]


class FakeBrokerServicer(broker_pb2_grpc.BrokerServicer):  # type: ignore[misc]
    """The wallet's RPCs of a FakeBroker over gRPC (errors mapped as the real one does)."""

    def __init__(self, fake: FakeBroker) -> None:
        self.fake = fake

    @staticmethod
    def _token(context: grpc.ServicerContext) -> str:
        return bearer_token(context.invocation_metadata())

    @maps_errors
    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.get_info()

    @maps_errors
    def RegisterReader(self, request: Any, context: grpc.ServicerContext) -> Any:
        reader = self.fake.register_reader(request.username, request.password)
        return broker_pb2.RegisterReaderResponse(reader_id=reader)

    @maps_errors
    def Login(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.login(request.username, request.password)

    @maps_errors
    def BuyCoin(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.buy_coin(self._token(context), request)

    @maps_errors
    def GetCoin(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.get_coin(self._token(context), request.ecoin_id)

    @maps_errors
    def ListCoins(self, request: Any, context: grpc.ServicerContext) -> Any:
        return broker_pb2.ListCoinsResponse(coins=self.fake.list_coins(self._token(context)))

    @maps_errors
    def GetAccount(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.get_account(self._token(context))

    @maps_errors
    def GetVendorCertificate(self, request: Any, context: grpc.ServicerContext) -> Any:
        env = self.fake.get_vendor_certificate(request.vendor_id)
        return broker_pb2.GetVendorCertificateResponse(certificate=env)
