from netpay.v1 import statements_pb2 as _statements_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VendorGetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VendorInfo(_message.Message):
    __slots__ = ("vendor_id", "certificate", "broker_id")
    VENDOR_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    vendor_id: str
    certificate: _statements_pb2.Envelope
    broker_id: str
    def __init__(self, vendor_id: _Optional[str] = ..., certificate: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., broker_id: _Optional[str] = ...) -> None: ...

class HandOffRequest(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: _statements_pb2.Envelope
    def __init__(self, grant: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ...) -> None: ...

class HandOffResponse(_message.Message):
    __slots__ = ("coin_index", "window_credit")
    COIN_INDEX_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CREDIT_FIELD_NUMBER: _ClassVar[int]
    coin_index: _statements_pb2.Envelope
    window_credit: _statements_pb2.Envelope
    def __init__(self, coin_index: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ..., window_credit: _Optional[_Union[_statements_pb2.Envelope, _Mapping]] = ...) -> None: ...
