from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WalletKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WALLET_KIND_UNSPECIFIED: _ClassVar[WalletKind]
    WALLET_KIND_CLIENT_SIDE: _ClassVar[WalletKind]
    WALLET_KIND_SERVER_SIDE: _ClassVar[WalletKind]
WALLET_KIND_UNSPECIFIED: WalletKind
WALLET_KIND_CLIENT_SIDE: WalletKind
WALLET_KIND_SERVER_SIDE: WalletKind

class Envelope(_message.Message):
    __slots__ = ("payload_type", "payload", "key_id", "signature")
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payload_type: str
    payload: bytes
    key_id: str
    signature: bytes
    def __init__(self, payload_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Touchstone(_message.Message):
    __slots__ = ("ecoin_id", "root", "n", "unit_value_minor", "currency", "wallet_kind", "owner", "issued_at_ms", "expires_at_ms", "broker_id")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    UNIT_VALUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    WALLET_KIND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    root: bytes
    n: int
    unit_value_minor: int
    currency: str
    wallet_kind: WalletKind
    owner: str
    issued_at_ms: int
    expires_at_ms: int
    broker_id: str
    def __init__(self, ecoin_id: _Optional[str] = ..., root: _Optional[bytes] = ..., n: _Optional[int] = ..., unit_value_minor: _Optional[int] = ..., currency: _Optional[str] = ..., wallet_kind: _Optional[_Union[WalletKind, str]] = ..., owner: _Optional[str] = ..., issued_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., broker_id: _Optional[str] = ...) -> None: ...

class VendorCertificate(_message.Message):
    __slots__ = ("vendor_id", "public_key", "grpc_address", "web_origin", "valid_until_ms", "broker_id", "display_name", "issued_at_ms")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WEB_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    public_key: bytes
    grpc_address: str
    web_origin: str
    valid_until_ms: int
    broker_id: str
    display_name: str
    issued_at_ms: int
    def __init__(self, vendor_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., grpc_address: _Optional[str] = ..., web_origin: _Optional[str] = ..., valid_until_ms: _Optional[int] = ..., broker_id: _Optional[str] = ..., display_name: _Optional[str] = ..., issued_at_ms: _Optional[int] = ...) -> None: ...

class HandOffGrant(_message.Message):
    __slots__ = ("ecoin_id", "from_vendor", "to_vendor", "epoch", "expires_at_ms", "broker_id")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_VENDOR_FIELD_NUMBER: _ClassVar[int]
    TO_VENDOR_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    from_vendor: str
    to_vendor: str
    epoch: int
    expires_at_ms: int
    broker_id: str
    def __init__(self, ecoin_id: _Optional[str] = ..., from_vendor: _Optional[str] = ..., to_vendor: _Optional[str] = ..., epoch: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., broker_id: _Optional[str] = ...) -> None: ...

class CoinIndex(_message.Message):
    __slots__ = ("ecoin_id", "epoch", "index", "payword", "vendor_id", "to_vendor", "issued_at_ms")
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PAYWORD_FIELD_NUMBER: _ClassVar[int]
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    TO_VENDOR_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ecoin_id: str
    epoch: int
    index: int
    payword: bytes
    vendor_id: str
    to_vendor: str
    issued_at_ms: int
    def __init__(self, ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., index: _Optional[int] = ..., payword: _Optional[bytes] = ..., vendor_id: _Optional[str] = ..., to_vendor: _Optional[str] = ..., issued_at_ms: _Optional[int] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("vendor_id", "ecoin_id", "epoch", "from_index", "to_index", "amount_minor", "currency", "item_id", "time_ms", "void_from")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TO_INDEX_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    VOID_FROM_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    amount_minor: int
    currency: str
    item_id: str
    time_ms: int
    void_from: int
    def __init__(self, vendor_id: _Optional[str] = ..., ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., from_index: _Optional[int] = ..., to_index: _Optional[int] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., item_id: _Optional[str] = ..., time_ms: _Optional[int] = ..., void_from: _Optional[int] = ...) -> None: ...

class WindowCredit(_message.Message):
    __slots__ = ("vendor_id", "ecoin_id", "epoch", "window_top", "consumed_index", "refund_units", "time_ms", "reason")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TOP_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_INDEX_FIELD_NUMBER: _ClassVar[int]
    REFUND_UNITS_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    ecoin_id: str
    epoch: int
    window_top: int
    consumed_index: int
    refund_units: int
    time_ms: int
    reason: str
    def __init__(self, vendor_id: _Optional[str] = ..., ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., window_top: _Optional[int] = ..., consumed_index: _Optional[int] = ..., refund_units: _Optional[int] = ..., time_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class WalletGrant(_message.Message):
    __slots__ = ("grant_id", "ecoin_id", "vendor_id", "max_units", "expires_at_ms", "broker_id", "issued_at_ms", "max_click_minor")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_UNITS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLICK_MINOR_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    ecoin_id: str
    vendor_id: str
    max_units: int
    expires_at_ms: int
    broker_id: str
    issued_at_ms: int
    max_click_minor: int
    def __init__(self, grant_id: _Optional[str] = ..., ecoin_id: _Optional[str] = ..., vendor_id: _Optional[str] = ..., max_units: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., broker_id: _Optional[str] = ..., issued_at_ms: _Optional[int] = ..., max_click_minor: _Optional[int] = ...) -> None: ...

class ClaimedRange(_message.Message):
    __slots__ = ("from_index", "to_index", "item_id", "time_ms", "void_from")
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TO_INDEX_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    VOID_FROM_FIELD_NUMBER: _ClassVar[int]
    from_index: int
    to_index: int
    item_id: str
    time_ms: int
    void_from: int
    def __init__(self, from_index: _Optional[int] = ..., to_index: _Optional[int] = ..., item_id: _Optional[str] = ..., time_ms: _Optional[int] = ..., void_from: _Optional[int] = ...) -> None: ...

class Claim(_message.Message):
    __slots__ = ("vendor_id", "ecoin_id", "epoch", "from_index", "to_index", "payword", "ranges", "issued_at_ms")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    TO_INDEX_FIELD_NUMBER: _ClassVar[int]
    PAYWORD_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    payword: bytes
    ranges: _containers.RepeatedCompositeFieldContainer[ClaimedRange]
    issued_at_ms: int
    def __init__(self, vendor_id: _Optional[str] = ..., ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., from_index: _Optional[int] = ..., to_index: _Optional[int] = ..., payword: _Optional[bytes] = ..., ranges: _Optional[_Iterable[_Union[ClaimedRange, _Mapping]]] = ..., issued_at_ms: _Optional[int] = ...) -> None: ...

class VendorRefund(_message.Message):
    __slots__ = ("vendor_id", "ecoin_id", "epoch", "receipt_to_index", "amount_minor", "currency", "reason", "time_ms", "refund_id")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    ECOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_TO_INDEX_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    ecoin_id: str
    epoch: int
    receipt_to_index: int
    amount_minor: int
    currency: str
    reason: str
    time_ms: int
    refund_id: str
    def __init__(self, vendor_id: _Optional[str] = ..., ecoin_id: _Optional[str] = ..., epoch: _Optional[int] = ..., receipt_to_index: _Optional[int] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., reason: _Optional[str] = ..., time_ms: _Optional[int] = ..., refund_id: _Optional[str] = ...) -> None: ...
