from netpay.v1 import statements_pb2 as _statements_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CoinState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COIN_STATE_UNSPECIFIED: _ClassVar[CoinState]
    COIN_STATE_FREE: _ClassVar[CoinState]
    COIN_STATE_HELD: _ClassVar[CoinState]
    COIN_STATE_RECALLING: _ClassVar[CoinState]
    COIN_STATE_EXPIRED: _ClassVar[CoinState]

class CheckpointStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECKPOINT_STATUS_UNSPECIFIED: _ClassVar[CheckpointStatus]
    CHECKPOINT_STATUS_LEASED: _ClassVar[CheckpointStatus]
    CHECKPOINT_STATUS_CLOSED: _ClassVar[CheckpointStatus]
    CHECKPOINT_STATUS_REJECTED: _ClassVar[CheckpointStatus]
    CHECKPOINT_STATUS_RECALLED: _ClassVar[CheckpointStatus]

class ClaimStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLAIM_STATUS_UNSPECIFIED: _ClassVar[ClaimStatus]
    CLAIM_STATUS_ACCEPTED: _ClassVar[ClaimStatus]
    CLAIM_STATUS_REJECTED: _ClassVar[ClaimStatus]
COIN_STATE_UNSPECIFIED: CoinState
COIN_STATE_FREE: CoinState
COIN_STATE_HELD: CoinState
COIN_STATE_RECALLING: CoinState
COIN_STATE_EXPIRED: CoinState
CHECKPOINT_STATUS_UNSPECIFIED: CheckpointStatus
CHECKPOINT_STATUS_LEASED: CheckpointStatus
CHECKPOINT_STATUS_CLOSED: CheckpointStatus
CHECKPOINT_STATUS_REJECTED: CheckpointStatus
CHECKPOINT_STATUS_RECALLED: CheckpointStatus
CLAIM_STATUS_UNSPECIFIED: ClaimStatus
CLAIM_STATUS_ACCEPTED: ClaimStatus
CLAIM_STATUS_REJECTED: ClaimStatus

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_chain_units", "max_click_amount_minor", "max_window_units", "max_gap_units", "max_unreported_units", "lease_ttl_s", "max_skew_s", "handoff_ttl_s", "retry_ttl_s", "window_ttl_s", "coin_expiry_s", "redemption_grace_s")
    MAX_CHAIN_UNITS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLICK_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    MAX_WINDOW_UNITS_FIELD_NUMBER: _ClassVar[int]
    MAX_GAP_UNITS_FIELD_NUMBER: _ClassVar[int]
    MAX_UNREPORTED_UNITS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_SKEW_S_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_TTL_S_FIELD_NUMBER: _ClassVar[int]
    RETRY_TTL_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TTL_S_FIELD_NUMBER: _ClassVar[int]
    COIN_EXPIRY_S_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_GRACE_S_FIELD_NUMBER: _ClassVar[int]
    max_chain_units: int
    max_click_amount_minor: int
    max_window_units: int
    max_gap_units: int
    max_unreported_units: int
    lease_ttl_s: int
    max_skew_s: int
    handoff_ttl_s: int
    retry_ttl_s: int
    window_ttl_s: int
    coin_expiry_s: int
    redemption_grace_s: int
    def __init__(self, max_chain_units: _Optional[int] = ..., max_click_amount_minor: _Optional[int] = ..., max_window_units: _Optional[int] = ..., max_gap_units: _Optional[int] = ..., max_unreported_units: _Optional[int] = ..., lease_ttl_s: _Optional[int] = ..., max_skew_s: _Optional[int] = ..., handoff_ttl_s: _Optional[int] = ..., retry_ttl_s: _Optional[int] = ..., window_ttl_s: _Optional[int] = ..., coin_expiry_s: _Optional[int] = ..., redemption_grace_s: _Optional[int] = ...) -> None: ...

class BrokerInfo(_message.Message):
    __slots__ = ("broker_id", "public_key", "currencies", "limits", "portal_url")
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CURRENCIES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PORTAL_URL_FIELD_NUMBER: _ClassVar[int]
    broker_id: str
    public_key: bytes
    currencies: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    portal_url: str
    def __init__(self, broker_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., currencies: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., portal_url: _Optional[str] = ...) -> None: ...

class RegisterReaderRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class RegisterReaderResponse(_message.Message):
    __slots__ = ("reader_id",)
    READER_ID_FIELD_NUMBER: _ClassVar[int]
    reader_id: str
    def __init__(self, reader_id: _Optional[str] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("token", "expires_at_ms", "reader_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    READER_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at_ms: int
    reader_id: str
    def __init__(self, token: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., reader_id: _Optional[str] = ...) -> None: ...

class RegisterVendorRequest(_message.Message):
    __slots__ = ("enrollment_token", "public_key", "grpc_address", "web_origin", "display_name")
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WEB_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    enrollment_token: str
    public_key: bytes
    grpc_address: str
    web_origin: str
    display_name: str
    def __init__(self, enrollment_token: _Optional[str] = ..., public_key: _Optional[bytes] = ..., grpc_address: _Optional[str] = ..., web_origin: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class RegisterVendorResponse(_message.Message):
    __slots__ = ("vendor_id", "vendor_token", "certificate", "broker_id", "broker_public_key")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    VENDOR_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    BROKER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    vendor_token: str
    certificate: _statements_pb2.Envelope
    broker_id: str
    broker_public_key: bytes
    def __init__(self, vendor_id: _Optional[str] = ..., vendor_token: _Optional[str] = ..., certificate: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., broker_id: _Optional[str] = ..., broker_public_key: _Optional[bytes] = ...) -> None: ...

class GetVendorCertificateRequest(_message.Message):
    __slots__ = ("vendor_id",)
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    def __init__(self, vendor_id: _Optional[str] = ...) -> None: ...

class GetVendorCertificateResponse(_message.Message):
    __slots__ = ("certificate",)
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    certificate: _statements_pb2.Envelope
    def __init__(self, certificate: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ...) -> None: ...

class BuyCoinRequest(_message.Message):
    __slots__ = ("request_id", "ecoin_id", "root", "n", "unit_value_minor", "currency", "wallet_kind", "wallet_password")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    UNIT_VALUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    WALLET_KIND_FIELD_NUMBER: _ClassVar[int]
    WALLET_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ecoin_id: str
    root: bytes
    n: int
    unit_value_minor: int
    currency: str
    wallet_kind: _statements_pb2.WalletKind
    wallet_password: str
    def __init__(self, request_id: _Optional[str] = ..., ecoin_id: _Optional[str] = ..., root: _Optional[bytes] = ..., n: _Optional[int] = ..., unit_value_minor: _Optional[int] = ..., currency: _Optional[str] = ..., wallet_kind: _Optional[_Union[_statements_pb2.WalletKind, str]] = ..., wallet_password: _Optional[str] = ...) -> None: ...

class BuyCoinResponse(_message.Message):
    __slots__ = ("touchstone", "amount_minor", "currency", "ecoin_id")
    TOUCHSTONE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    touchstone: _statements_pb2.Envelope
    amount_minor: int
    currency: str
    ecoin_id: str
    def __init__(self, touchstone: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., ecoin_id: _Optional[str] = ...) -> None: ...

class GetCoinRequest(_message.Message):
    __slots__ = ("ecoin_id",)
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    def __init__(self, ecoin_id: _Optional[str] = ...) -> None: ...

class CoinStatus(_message.Message):
    __slots__ = ("touchstone", "state", "frozen", "holder", "epoch", "latest_index", "latest_word")
    TOUCHSTONE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LATEST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LATEST_WORD_FIELD_NUMBER: _ClassVar[int]
    touchstone: _statements_pb2.Envelope
    state: CoinState
    frozen: bool
    holder: str
    epoch: int
    latest_index: int
    latest_word: bytes
    def __init__(self, touchstone: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., state: _Optional[_Union[CoinState, str]] = ..., frozen: _Optional[bool] = ..., holder: _Optional[str] = ..., epoch: _Optional[int] = ..., latest_index: _Optional[int] = ..., latest_word: _Optional[bytes] = ...) -> None: ...

class ListCoinsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCoinsResponse(_message.Message):
    __slots__ = ("coins",)
    COINS_FIELD_NUMBER: _ClassVar[int]
    coins: _containers.RepeatedCompositeFieldContainer[CoinStatus]
    def __init__(self, coins: _Optional[_Iterable[_Union[CoinStatus, _Mapping]]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AccountBalance(_message.Message):
    __slots__ = ("currency", "balance_minor")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    currency: str
    balance_minor: int
    def __init__(self, currency: _Optional[str] = ..., balance_minor: _Optional[int] = ...) -> None: ...

class SpendingLimit(_message.Message):
    __slots__ = ("currency", "max_click_minor", "max_day_minor", "spent_today_minor")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_CLICK_MINOR_FIELD_NUMBER: _ClassVar[int]
    MAX_DAY_MINOR_FIELD_NUMBER: _ClassVar[int]
    SPENT_TODAY_MINOR_FIELD_NUMBER: _ClassVar[int]
    currency: str
    max_click_minor: int
    max_day_minor: int
    spent_today_minor: int
    def __init__(self, currency: _Optional[str] = ..., max_click_minor: _Optional[int] = ..., max_day_minor: _Optional[int] = ..., spent_today_minor: _Optional[int] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("reader_id", "balances", "limits")
    READER_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    reader_id: str
    balances: _containers.RepeatedCompositeFieldContainer[AccountBalance]
    limits: _containers.RepeatedCompositeFieldContainer[SpendingLimit]
    def __init__(self, reader_id: _Optional[str] = ..., balances: _Optional[_Iterable[_Union[AccountBalance, _Mapping]]] = ..., limits: _Optional[_Iterable[_Union[SpendingLimit, _Mapping]]] = ...) -> None: ...

class SetSpendingLimitsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: SpendingLimit
    def __init__(self, limit: _Optional[_Union[SpendingLimit, _Mapping]] = ...) -> None: ...

class AcquireCoinRequest(_message.Message):
    __slots__ = ("ecoin_id", "proof_index", "proof_word", "force", "wallet_grant", "currency")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    PROOF_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROOF_WORD_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    WALLET_GRANT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    proof_index: int
    proof_word: bytes
    force: bool
    wallet_grant: _statements_pb2.Envelope
    currency: str
    def __init__(self, ecoin_id: _Optional[str] = ..., proof_index: _Optional[int] = ..., proof_word: _Optional[bytes] = ..., force: _Optional[bool] = ..., wallet_grant: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., currency: _Optional[str] = ...) -> None: ...

class CustodyGrant(_message.Message):
    __slots__ = ("ecoin_id", "epoch", "base_index", "base_word", "touchstone", "lease_ttl_s", "max_skew_s", "holder", "refund_pending_units")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    BASE_INDEX_FIELD_NUMBER: _ClassVar[int]
    BASE_WORD_FIELD_NUMBER: _ClassVar[int]
    TOUCHSTONE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_SKEW_S_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    REFUND_PENDING_UNITS_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    epoch: int
    base_index: int
    base_word: bytes
    touchstone: _statements_pb2.Envelope
    lease_ttl_s: int
    max_skew_s: int
    holder: str
    refund_pending_units: int
    def __init__(self, ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., base_index: _Optional[int] = ..., base_word: _Optional[bytes] = ..., touchstone: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., lease_ttl_s: _Optional[int] = ..., max_skew_s: _Optional[int] = ..., holder: _Optional[str] = ..., refund_pending_units: _Optional[int] = ...) -> None: ...

class HandOffRequired(_message.Message):
    __slots__ = ("grant", "holder_certificate", "touchstone")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    HOLDER_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    TOUCHSTONE_FIELD_NUMBER: _ClassVar[int]
    grant: _statements_pb2.Envelope
    holder_certificate: _statements_pb2.Envelope
    touchstone: _statements_pb2.Envelope
    def __init__(self, grant: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., holder_certificate: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., touchstone: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ...) -> None: ...

class AcquireCoinResponse(_message.Message):
    __slots__ = ("custody", "handoff")
    CUSTODY_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    custody: CustodyGrant
    handoff: HandOffRequired
    def __init__(self, custody: _Optional[_Union[CustodyGrant, _Mapping]] = ..., handoff: _Optional[_Union[HandOffRequired, _Mapping]] = ...) -> None: ...

class RecordHandoffRequest(_message.Message):
    __slots__ = ("coin_index", "window_credit")
    COIN_INDEX_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CREDIT_FIELD_NUMBER: _ClassVar[int]
    coin_index: _statements_pb2.Envelope
    window_credit: _statements_pb2.Envelope
    def __init__(self, coin_index: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., window_credit: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ...) -> None: ...

class ReclaimRequest(_message.Message):
    __slots__ = ("ecoin_id", "epoch", "coin_index")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    COIN_INDEX_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    epoch: int
    coin_index: _statements_pb2.Envelope
    def __init__(self, ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., coin_index: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("indexes",)
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    indexes: _containers.RepeatedCompositeFieldContainer[_statements_pb2.Envelope]
    def __init__(self, indexes: _Optional[_Iterable[_Union[_statements_pb2.Envelope, _Mapping]]] = ...) -> None: ...

class CheckpointResult(_message.Message):
    __slots__ = ("ecoin_id", "epoch", "status", "detail", "acknowledged_index", "revoked", "recall_to")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_INDEX_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    RECALL_TO_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    epoch: int
    status: CheckpointStatus
    detail: str
    acknowledged_index: int
    revoked: bool
    recall_to: str
    def __init__(self, ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., status: _Optional[_Union[CheckpointStatus, str]] = ..., detail: _Optional[str] = ..., acknowledged_index: _Optional[int] = ..., revoked: _Optional[bool] = ..., recall_to: _Optional[str] = ...) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("results", "lease_ttl_s", "max_skew_s")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_SKEW_S_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CheckpointResult]
    lease_ttl_s: int
    max_skew_s: int
    def __init__(self, results: _Optional[_Iterable[_Union[CheckpointResult, _Mapping]]] = ..., lease_ttl_s: _Optional[int] = ..., max_skew_s: _Optional[int] = ...) -> None: ...

class FreezeCoinRequest(_message.Message):
    __slots__ = ("ecoin_id",)
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    def __init__(self, ecoin_id: _Optional[str] = ...) -> None: ...

class UnfreezeCoinRequest(_message.Message):
    __slots__ = ("ecoin_id",)
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    def __init__(self, ecoin_id: _Optional[str] = ...) -> None: ...

class RedeemRequest(_message.Message):
    __slots__ = ("batch_id", "claims", "window_credits", "vendor_refunds")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CREDITS_FIELD_NUMBER: _ClassVar[int]
    VENDOR_REFUNDS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    claims: _containers.RepeatedCompositeFieldContainer[_statements_pb2.Envelope]
    window_credits: _containers.RepeatedCompositeFieldContainer[_statements_pb2.Envelope]
    vendor_refunds: _containers.RepeatedCompositeFieldContainer[_statements_pb2.Envelope]
    def __init__(self, batch_id: _Optional[str] = ..., claims: _Optional[_Iterable[_Union[_statements_pb2.Envelope, _Mapping]]] = ..., window_credits: _Optional[_Iterable[_Union[_statements_pb2.Envelope, _Mapping]]] = ..., vendor_refunds: _Optional[_Iterable[_Union[_statements_pb2.Envelope, _Mapping]]] = ...) -> None: ...

class ClaimResult(_message.Message):
    __slots__ = ("ecoin_id", "epoch", "to_index", "status", "reason", "detail", "paid_units", "paid_minor", "currency", "refund_units")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TO_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PAID_UNITS_FIELD_NUMBER: _ClassVar[int]
    PAID_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REFUND_UNITS_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    epoch: int
    to_index: int
    status: ClaimStatus
    reason: str
    detail: str
    paid_units: int
    paid_minor: int
    currency: str
    refund_units: int
    def __init__(self, ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., to_index: _Optional[int] = ..., status: _Optional[_Union[ClaimStatus, str]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., paid_units: _Optional[int] = ..., paid_minor: _Optional[int] = ..., currency: _Optional[str] = ..., refund_units: _Optional[int] = ...) -> None: ...

class RefundResult(_message.Message):
    __slots__ = ("refund_id", "status", "reason", "detail")
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    refund_id: str
    status: ClaimStatus
    reason: str
    detail: str
    def __init__(self, refund_id: _Optional[str] = ..., status: _Optional[_Union[ClaimStatus, str]] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class RedeemResponse(_message.Message):
    __slots__ = ("batch_id", "results", "paid", "refunds")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    REFUNDS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    results: _containers.RepeatedCompositeFieldContainer[ClaimResult]
    paid: _containers.RepeatedCompositeFieldContainer[AccountBalance]
    refunds: _containers.RepeatedCompositeFieldContainer[RefundResult]
    def __init__(self, batch_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ClaimResult, _Mapping]]] = ..., paid: _Optional[_Iterable[_Union[AccountBalance, _Mapping]]] = ..., refunds: _Optional[_Iterable[_Union[RefundResult, _Mapping]]] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("ecoin_id", "limit", "before_ms")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    limit: int
    before_ms: int
    def __init__(self, ecoin_id: _Optional[str] = ..., limit: _Optional[int] = ..., before_ms: _Optional[int] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("time_ms", "kind", "ecoin_id", "vendor_id", "item_id", "epoch", "from_index", "to_index", "amount_minor", "currency", "batch_id")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TO_INDEX_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    kind: str
    ecoin_id: str
    vendor_id: str
    item_id: str
    epoch: int
    from_index: int
    to_index: int
    amount_minor: int
    currency: str
    batch_id: str
    def __init__(self, time_ms: _Optional[int] = ..., kind: _Optional[str] = ..., ecoin_id: _Optional[str] = ..., vendor_id: _Optional[str] = ..., item_id: _Optional[str] = ..., epoch: _Optional[int] = ..., from_index: _Optional[int] = ..., to_index: _Optional[int] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., batch_id: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class ExchangeWalletCodeRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class ExchangeWalletCodeResponse(_message.Message):
    __slots__ = ("grant", "touchstone", "latest_index")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    TOUCHSTONE_FIELD_NUMBER: _ClassVar[int]
    LATEST_INDEX_FIELD_NUMBER: _ClassVar[int]
    grant: _statements_pb2.Envelope
    touchstone: _statements_pb2.Envelope
    latest_index: int
    def __init__(self, grant: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., touchstone: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., latest_index: _Optional[int] = ...) -> None: ...

class DrawWindowRequest(_message.Message):
    __slots__ = ("wallet_grant", "epoch", "units")
    WALLET_GRANT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    wallet_grant: _statements_pb2.Envelope
    epoch: int
    units: int
    def __init__(self, wallet_grant: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., epoch: _Optional[int] = ..., units: _Optional[int] = ...) -> None: ...

class DrawWindowResponse(_message.Message):
    __slots__ = ("ecoin_id", "epoch", "from_index", "to_index", "payword", "touchstone", "grant_units_left")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TO_INDEX_FIELD_NUMBER: _ClassVar[int]
    PAYWORD_FIELD_NUMBER: _ClassVar[int]
    TOUCHSTONE_FIELD_NUMBER: _ClassVar[int]
    GRANT_UNITS_LEFT_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    payword: bytes
    touchstone: _statements_pb2.Envelope
    grant_units_left: int
    def __init__(self, ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., from_index: _Optional[int] = ..., to_index: _Optional[int] = ..., payword: _Optional[bytes] = ..., touchstone: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., grant_units_left: _Optional[int] = ...) -> None: ...
