"""The Broker gRPC servicer: translate messages, call one service, map errors.

Every method is wrapped with :func:`netpay.transport.status.maps_errors`, the
one place where a NetPayError becomes a status code with an ErrorInfo detail.
"""

from __future__ import annotations

import grpc

from broker.domain import CoinState
from broker.services import (
    BrokerServices,
    BuyCoinInput,
    CheckpointStatus,
    CoinStatusView,
    CustodyGrantView,
    WalletKind,
)
from netpay.encoding import check_currency
from netpay.limits import limits_to_proto
from netpay.spending import SpendingLimits
from netpay.transport.auth import bearer_token
from netpay.transport.status import maps_errors
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

__all__ = ["SERVICE_NAME", "BrokerServicer"]

SERVICE_NAME: str = bpb.DESCRIPTOR.services_by_name["Broker"].full_name

_STATE = {
    CoinState.FREE: bpb.COIN_STATE_FREE,
    CoinState.HELD: bpb.COIN_STATE_HELD,
    CoinState.RECALLING: bpb.COIN_STATE_RECALLING,
    CoinState.EXPIRED: bpb.COIN_STATE_EXPIRED,
}
_CHECKPOINT = {
    CheckpointStatus.LEASED: bpb.CHECKPOINT_STATUS_LEASED,
    CheckpointStatus.CLOSED: bpb.CHECKPOINT_STATUS_CLOSED,
    CheckpointStatus.REJECTED: bpb.CHECKPOINT_STATUS_REJECTED,
    CheckpointStatus.RECALLED: bpb.CHECKPOINT_STATUS_RECALLED,
}
_WALLET_KIND = {
    pb.WALLET_KIND_CLIENT_SIDE: WalletKind.CLIENT_SIDE,
    pb.WALLET_KIND_SERVER_SIDE: WalletKind.SERVER_SIDE,
}


def _token(context: grpc.ServicerContext) -> str:
    return bearer_token(context.invocation_metadata())


def _optional_token(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == "authorization":
            return bearer_token([(key, value)])
    return None


def _coin_status(view: CoinStatusView) -> bpb.CoinStatus:
    return bpb.CoinStatus(
        touchstone=view.touchstone,
        state=_STATE[view.state],
        frozen=view.frozen,
        holder=view.holder or "",
        epoch=view.epoch,
        latest_index=view.latest.index,
        latest_word=view.latest.word,
    )


def _custody_grant(view: CustodyGrantView) -> bpb.CustodyGrant:
    return bpb.CustodyGrant(
        ecoin_id=view.ecoin_id,
        epoch=view.epoch,
        base_index=view.base.index,
        base_word=view.base.word,
        touchstone=view.touchstone,
        lease_ttl_s=view.lease_ttl_s,
        max_skew_s=view.max_skew_s,
        holder=view.holder,
        refund_pending_units=view.refund_pending_units,
    )


class BrokerServicer(broker_pb2_grpc.BrokerServicer):
    """netpay.v1.Broker over :class:`BrokerServices`."""

    def __init__(self, services: BrokerServices) -> None:
        self._services = services

    def _reader(self, context: grpc.ServicerContext) -> str:
        return self._services.authenticate_reader(_token(context))

    def _vendor(self, context: grpc.ServicerContext) -> str:
        return self._services.authenticate_vendor(_token(context))

    # -- identity -----------------------------------------------------------------

    @maps_errors
    def GetInfo(  # noqa: N802
        self, request: bpb.GetInfoRequest, context: grpc.ServicerContext
    ) -> bpb.BrokerInfo:
        s = self._services
        return bpb.BrokerInfo(
            broker_id=s.broker_id,
            public_key=s.public_key,
            currencies=list(s.currencies),
            limits=limits_to_proto(s.limits),
            portal_url=s.portal_url,
        )

    @maps_errors
    def RegisterReader(  # noqa: N802
        self, request: bpb.RegisterReaderRequest, context: grpc.ServicerContext
    ) -> bpb.RegisterReaderResponse:
        reader_id = self._services.register_reader(request.username, request.password)
        return bpb.RegisterReaderResponse(reader_id=reader_id)

    @maps_errors
    def Login(  # noqa: N802
        self, request: bpb.LoginRequest, context: grpc.ServicerContext
    ) -> bpb.LoginResponse:
        result = self._services.login(request.username, request.password)
        return bpb.LoginResponse(
            token=result.token, expires_at_ms=result.expires_at_ms, reader_id=result.reader_id
        )

    @maps_errors
    def RegisterVendor(  # noqa: N802
        self, request: bpb.RegisterVendorRequest, context: grpc.ServicerContext
    ) -> bpb.RegisterVendorResponse:
        result = self._services.register_vendor(
            enrollment_token=request.enrollment_token,
            bearer_token=None if request.enrollment_token else _optional_token(context),
            public_key=request.public_key,
            grpc_address=request.grpc_address,
            web_origin=request.web_origin,
            display_name=request.display_name,
        )
        return bpb.RegisterVendorResponse(
            vendor_id=result.vendor_id,
            vendor_token=result.vendor_token or "",
            certificate=result.certificate,
            broker_id=result.broker_id,
            broker_public_key=result.broker_public_key,
        )

    @maps_errors
    def GetVendorCertificate(  # noqa: N802
        self, request: bpb.GetVendorCertificateRequest, context: grpc.ServicerContext
    ) -> bpb.GetVendorCertificateResponse:
        certificate = self._services.vendor_certificate(request.vendor_id)
        return bpb.GetVendorCertificateResponse(certificate=certificate)

    # -- coins --------------------------------------------------------------------

    @maps_errors
    def BuyCoin(  # noqa: N802
        self, request: bpb.BuyCoinRequest, context: grpc.ServicerContext
    ) -> bpb.BuyCoinResponse:
        reader_id = self._reader(context)
        result = self._services.buy_coin(
            reader_id,
            BuyCoinInput(
                request_id=request.request_id,
                ecoin_id=request.ecoin_id,
                root=request.root,
                n=request.n,
                unit_value_minor=request.unit_value_minor,
                currency=request.currency,
                wallet_kind=_WALLET_KIND.get(request.wallet_kind, WalletKind.UNSPECIFIED),
                wallet_password=request.wallet_password,
            ),
        )
        return bpb.BuyCoinResponse(
            touchstone=result.touchstone,
            amount_minor=result.amount_minor,
            currency=result.currency,
            ecoin_id=result.ecoin_id,
        )

    @maps_errors
    def GetCoin(  # noqa: N802
        self, request: bpb.GetCoinRequest, context: grpc.ServicerContext
    ) -> bpb.CoinStatus:
        reader_id, vendor_id = self._services.authenticate_any(_token(context))
        view = self._services.get_coin(request.ecoin_id, reader_id=reader_id, vendor_id=vendor_id)
        return _coin_status(view)

    @maps_errors
    def ListCoins(  # noqa: N802
        self, request: bpb.ListCoinsRequest, context: grpc.ServicerContext
    ) -> bpb.ListCoinsResponse:
        reader_id = self._reader(context)
        coins = self._services.list_coins(reader_id)
        return bpb.ListCoinsResponse(coins=[_coin_status(view) for view in coins])

    @maps_errors
    def FreezeCoin(  # noqa: N802
        self, request: bpb.FreezeCoinRequest, context: grpc.ServicerContext
    ) -> bpb.CoinStatus:
        return self._set_frozen(request.ecoin_id, context, frozen=True)

    @maps_errors
    def UnfreezeCoin(  # noqa: N802
        self, request: bpb.UnfreezeCoinRequest, context: grpc.ServicerContext
    ) -> bpb.CoinStatus:
        return self._set_frozen(request.ecoin_id, context, frozen=False)

    def _set_frozen(
        self, ecoin_id: str, context: grpc.ServicerContext, *, frozen: bool
    ) -> bpb.CoinStatus:
        view = self._services.freeze_coin(ecoin_id, frozen=frozen, reader_id=self._reader(context))
        return _coin_status(view)

    @maps_errors
    def GetAccount(  # noqa: N802
        self, request: bpb.GetAccountRequest, context: grpc.ServicerContext
    ) -> bpb.GetAccountResponse:
        reader_id = self._reader(context)
        return self._account(reader_id)

    def _account(self, reader_id: str) -> bpb.GetAccountResponse:
        balances = self._services.account_balances(reader_id)
        limits = []
        for lim, spent in self._services.spending_limits(reader_id):
            msg = bpb.SpendingLimit(currency=lim.currency, spent_today_minor=spent)
            if lim.max_click_minor is not None:
                msg.max_click_minor = lim.max_click_minor
            if lim.max_day_minor is not None:
                msg.max_day_minor = lim.max_day_minor
            limits.append(msg)
        return bpb.GetAccountResponse(
            reader_id=reader_id,
            balances=[
                bpb.AccountBalance(currency=currency, balance_minor=amount)
                for currency, amount in balances.items()
            ],
            limits=limits,
        )

    @maps_errors
    def SetSpendingLimits(  # noqa: N802
        self, request: bpb.SetSpendingLimitsRequest, context: grpc.ServicerContext
    ) -> bpb.GetAccountResponse:
        reader_id = self._reader(context)
        lim = request.limit
        self._services.set_spending_limits(
            reader_id,
            SpendingLimits(
                check_currency(lim.currency),
                lim.max_click_minor if lim.HasField("max_click_minor") else None,
                lim.max_day_minor if lim.HasField("max_day_minor") else None,
            ),
        )
        return self._account(reader_id)

    # -- custody ------------------------------------------------------------------

    @maps_errors
    def AcquireCoin(  # noqa: N802
        self, request: bpb.AcquireCoinRequest, context: grpc.ServicerContext
    ) -> bpb.AcquireCoinResponse:
        vendor_id = self._vendor(context)
        result = self._services.acquire_coin(
            vendor_id,
            request.ecoin_id,
            request.proof_index,
            request.proof_word,
            force=request.force,
            wallet_grant=request.wallet_grant if request.HasField("wallet_grant") else None,
            currency=request.currency[:3],
        )
        if isinstance(result, CustodyGrantView):
            return bpb.AcquireCoinResponse(custody=_custody_grant(result))
        return bpb.AcquireCoinResponse(
            handoff=bpb.HandOffRequired(
                grant=result.grant,
                holder_certificate=result.holder_certificate,
                touchstone=result.touchstone,
            )
        )

    @maps_errors
    def RecordHandoff(  # noqa: N802
        self, request: bpb.RecordHandoffRequest, context: grpc.ServicerContext
    ) -> bpb.CustodyGrant:
        vendor_id = self._vendor(context)
        credit = request.window_credit if request.HasField("window_credit") else None
        return _custody_grant(
            self._services.record_handoff(vendor_id, request.coin_index, window_credit=credit)
        )

    @maps_errors
    def Reclaim(  # noqa: N802
        self, request: bpb.ReclaimRequest, context: grpc.ServicerContext
    ) -> bpb.CustodyGrant:
        vendor_id = self._vendor(context)
        view = self._services.reclaim(
            vendor_id, request.ecoin_id, request.epoch, request.coin_index
        )
        return _custody_grant(view)

    @maps_errors
    def Checkpoint(  # noqa: N802
        self, request: bpb.CheckpointRequest, context: grpc.ServicerContext
    ) -> bpb.CheckpointResponse:
        vendor_id = self._vendor(context)
        outcome = self._services.checkpoint(vendor_id, list(request.indexes))
        return bpb.CheckpointResponse(
            results=[
                bpb.CheckpointResult(
                    ecoin_id=item.ecoin_id,
                    epoch=item.epoch,
                    status=_CHECKPOINT[item.status],
                    detail=item.detail[:500],
                    acknowledged_index=item.acknowledged_index,
                    revoked=item.revoked,
                    recall_to=item.recall_to,
                )
                for item in outcome.results
            ],
            lease_ttl_s=outcome.lease_ttl_s,
            max_skew_s=outcome.max_skew_s,
        )

    # -- money -------------------------------------------------------------------------

    @maps_errors
    def Redeem(  # noqa: N802
        self, request: bpb.RedeemRequest, context: grpc.ServicerContext
    ) -> bpb.RedeemResponse:
        vendor_id = self._vendor(context)
        return self._services.redeem(vendor_id, request)

    @maps_errors
    def History(  # noqa: N802
        self, request: bpb.HistoryRequest, context: grpc.ServicerContext
    ) -> bpb.HistoryResponse:
        reader_id, vendor_id = self._services.authenticate_any(_token(context))
        items = self._services.history(
            reader_id=reader_id,
            vendor_id=vendor_id,
            ecoin_id=request.ecoin_id,
            limit=request.limit,
            before_ms=request.before_ms,
        )
        return bpb.HistoryResponse(
            entries=[
                bpb.HistoryEntry(
                    time_ms=h.time_ms,
                    kind=h.kind,
                    ecoin_id=h.ecoin_id,
                    vendor_id=h.vendor_id,
                    item_id=h.item_id,
                    epoch=h.epoch,
                    from_index=h.from_index,
                    to_index=h.to_index,
                    amount_minor=h.amount_minor,
                    currency=h.currency,
                    batch_id=h.batch_id,
                )
                for h in items
            ]
        )

    # -- server-side wallets ---------------------------------------------------------

    @maps_errors
    def ExchangeWalletCode(  # noqa: N802
        self, request: bpb.ExchangeWalletCodeRequest, context: grpc.ServicerContext
    ) -> bpb.ExchangeWalletCodeResponse:
        vendor_id = self._vendor(context)
        view = self._services.exchange_wallet_code(vendor_id, request.code)
        return bpb.ExchangeWalletCodeResponse(
            grant=view.grant, touchstone=view.touchstone, latest_index=view.latest_index
        )

    @maps_errors
    def DrawWindow(  # noqa: N802
        self, request: bpb.DrawWindowRequest, context: grpc.ServicerContext
    ) -> bpb.DrawWindowResponse:
        vendor_id = self._vendor(context)
        view = self._services.draw_window(
            vendor_id, request.wallet_grant, request.epoch, request.units
        )
        return bpb.DrawWindowResponse(
            ecoin_id=view.ecoin_id,
            epoch=view.epoch,
            from_index=view.from_index,
            to_index=view.to_index,
            payword=view.payword,
            touchstone=view.touchstone,
            grant_units_left=view.grant_units_left,
        )
