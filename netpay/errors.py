"""The one NetPay error tree.

Every error a party raises on purpose is a :class:`NetPayError`. Each carries
a machine-readable ``code`` (the protocol's error codes for payment errors),
the HTTP status the vendor answers with, and the gRPC status name the
servicers map it to. The mapping to transport happens in exactly one place
per boundary (``netpay.transport.status`` for gRPC, the vendor's web layer for
HTTP); raising code never touches a status code.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AlreadyExists",
    "AlreadySpent",
    "BadPayword",
    "BrokerUnavailable",
    "CoinBusy",
    "Conflict",
    "Expired",
    "Insufficient",
    "InvalidArgument",
    "LimitExceeded",
    "Malformed",
    "NetPayError",
    "NotFound",
    "PaymentError",
    "PermissionDenied",
    "PreconditionFailed",
    "Revoked",
    "SignatureInvalid",
    "Unauthenticated",
    "Unavailable",
    "WrongAmount",
    "WrongCurrency",
    "error_for_code",
]


class NetPayError(Exception):
    """Base of every deliberate NetPay error."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        detail: str = "",
        *,
        index: int | None = None,
        seen: bytes | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        self.index = index
        # SHA-256("NP1-seen" || w[index]) (netpay.chain.seen_of), never the word:
        # no refusal publishes a word (protocol.md revision 1.1, change 1).
        self.seen = seen
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r})"


# -- input and identity -------------------------------------------------------


class InvalidArgument(NetPayError):
    """A request field is out of range or badly formed."""

    code = "invalid_argument"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class Malformed(InvalidArgument):
    """An `Authorization: NetPay` header (or other wire text) does not parse."""

    code = "malformed"


class SignatureInvalid(InvalidArgument):
    """An envelope's type, signer or signature is not what the verifier requires."""

    code = "bad_signature"


class Unauthenticated(NetPayError):
    code = "unauthenticated"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class PermissionDenied(NetPayError):
    code = "permission_denied"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class NotFound(NetPayError):
    code = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class AlreadyExists(NetPayError):
    code = "already_exists"
    http_status = 409
    grpc_status = "ALREADY_EXISTS"


class PreconditionFailed(NetPayError):
    """The state does not allow the operation (wrong epoch, not the holder...)."""

    code = "failed_precondition"
    http_status = 409
    grpc_status = "FAILED_PRECONDITION"


class Conflict(PreconditionFailed):
    """A compare-and-set lost; the caller may re-read and start again."""

    code = "conflict"


class Unavailable(NetPayError):
    code = "unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


# -- payment errors (protocol.md, "The HTTP payment") -------------------------


class PaymentError(NetPayError):
    """A payment was refused; the 402 family unless stated otherwise."""

    http_status = 402
    grpc_status = "FAILED_PRECONDITION"


class BadPayword(PaymentError):
    code = "bad_payword"


class WrongAmount(PaymentError):
    code = "wrong_amount"


class WrongCurrency(PaymentError):
    code = "wrong_currency"


class Expired(PaymentError):
    code = "expired"


class Revoked(PaymentError):
    code = "revoked"


class Insufficient(PaymentError):
    code = "insufficient"


class LimitExceeded(PaymentError):
    code = "limit_exceeded"


class AlreadySpent(PaymentError):
    """The index is spent; carries the current index and its ``seen`` for resync."""

    code = "already_spent"
    http_status = 409


class CoinBusy(PaymentError):
    """The coin is changing hands; retry after ``retry_after_s``."""

    code = "coin_busy"
    http_status = 409


class BrokerUnavailable(PaymentError):
    code = "broker_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


_BY_CODE: dict[str, type[NetPayError]] = {}


def _collect(cls: type[NetPayError]) -> None:
    for sub in cls.__subclasses__():
        _BY_CODE.setdefault(sub.code, sub)
        _collect(sub)


_BY_CODE[NetPayError.code] = NetPayError
_collect(NetPayError)


def error_for_code(code: str) -> type[NetPayError]:
    """The error class for a wire code; unknown codes map to the base class."""
    return _BY_CODE.get(code, NetPayError)
