"""The wallet's gRPC client for the broker.

Reader calls carry ``authorization: Bearer <token>``; every call has a
deadline; a failed call becomes the typed NetPayError it stands for
(``from_rpc_error``), transport failures ``BrokerUnavailable``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc

from netpay.errors import BrokerUnavailable
from netpay.transport.auth import bearer_metadata
from netpay.transport.server import channel_options, split_host_port
from netpay.transport.status import from_rpc_error
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

__all__ = ["RPC_TIMEOUT_S", "BrokerApi", "BrokerClient", "BrokerFactory"]

RPC_TIMEOUT_S = 10.0


class BrokerApi(Protocol):
    """What the wallet asks of the broker (the real client and test fakes)."""

    def get_info(self) -> broker_pb2.BrokerInfo: ...

    def register_reader(self, username: str, password: str) -> str: ...

    def login(self, username: str, password: str) -> broker_pb2.LoginResponse: ...

    def buy_coin(
        self, token: str, request: broker_pb2.BuyCoinRequest
    ) -> broker_pb2.BuyCoinResponse: ...

    def get_coin(self, token: str, ecoin_id: str) -> broker_pb2.CoinStatus: ...

    def list_coins(self, token: str) -> list[broker_pb2.CoinStatus]: ...

    def get_account(self, token: str) -> broker_pb2.GetAccountResponse: ...

    def set_spending_limits(
        self, token: str, limit: broker_pb2.SpendingLimit
    ) -> broker_pb2.GetAccountResponse: ...

    def history(
        self, token: str, request: broker_pb2.HistoryRequest
    ) -> broker_pb2.HistoryResponse: ...

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope: ...

    def close(self) -> None: ...


BrokerFactory = Callable[[str], BrokerApi]


class BrokerClient:
    """A channel to one broker address (``host:port``)."""

    def __init__(self, address: str, *, timeout_s: float = RPC_TIMEOUT_S) -> None:
        split_host_port(address)  # InvalidArgument on a bad address
        self.address = address
        self._timeout_s = timeout_s
        # Its own connection (no subchannel shared with other channels in the
        # process): a client made after a broker outage connects at once, as
        # the next `netpay wallet` command would, instead of inheriting the
        # reconnect backoff of an older client's connection.
        self._channel = grpc.insecure_channel(
            address, options=[*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
        )
        self._stub: Any = broker_pb2_grpc.BrokerStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., Any], request: Any, token: str | None = None) -> Any:
        metadata = bearer_metadata(token) if token else None
        try:
            return method(request, timeout=self._timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, unavailable=BrokerUnavailable) from None

    def get_info(self) -> broker_pb2.BrokerInfo:
        resp: broker_pb2.BrokerInfo = self._call(self._stub.GetInfo, broker_pb2.GetInfoRequest())
        return resp

    def register_reader(self, username: str, password: str) -> str:
        resp: broker_pb2.RegisterReaderResponse = self._call(
            self._stub.RegisterReader,
            broker_pb2.RegisterReaderRequest(username=username, password=password),
        )
        return resp.reader_id

    def login(self, username: str, password: str) -> broker_pb2.LoginResponse:
        resp: broker_pb2.LoginResponse = self._call(
            self._stub.Login, broker_pb2.LoginRequest(username=username, password=password)
        )
        return resp

    def buy_coin(
        self, token: str, request: broker_pb2.BuyCoinRequest
    ) -> broker_pb2.BuyCoinResponse:
        resp: broker_pb2.BuyCoinResponse = self._call(self._stub.BuyCoin, request, token)
        return resp

    def get_coin(self, token: str, ecoin_id: str) -> broker_pb2.CoinStatus:
        resp: broker_pb2.CoinStatus = self._call(
            self._stub.GetCoin, broker_pb2.GetCoinRequest(ecoin_id=ecoin_id), token
        )
        return resp

    def list_coins(self, token: str) -> list[broker_pb2.CoinStatus]:
        resp: broker_pb2.ListCoinsResponse = self._call(
            self._stub.ListCoins, broker_pb2.ListCoinsRequest(), token
        )
        return list(resp.coins)

    def get_account(self, token: str) -> broker_pb2.GetAccountResponse:
        resp: broker_pb2.GetAccountResponse = self._call(
            self._stub.GetAccount, broker_pb2.GetAccountRequest(), token
        )
        return resp

    def set_spending_limits(
        self, token: str, limit: broker_pb2.SpendingLimit
    ) -> broker_pb2.GetAccountResponse:
        resp: broker_pb2.GetAccountResponse = self._call(
            self._stub.SetSpendingLimits, broker_pb2.SetSpendingLimitsRequest(limit=limit), token
        )
        return resp

    def history(self, token: str, request: broker_pb2.HistoryRequest) -> broker_pb2.HistoryResponse:
        resp: broker_pb2.HistoryResponse = self._call(self._stub.History, request, token)
        return resp

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        resp: broker_pb2.GetVendorCertificateResponse = self._call(
            self._stub.GetVendorCertificate,
            broker_pb2.GetVendorCertificateRequest(vendor_id=vendor_id),
        )
        return resp.certificate
