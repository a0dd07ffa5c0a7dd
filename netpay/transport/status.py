"""NetPayError <-> gRPC status, in one place for every service and client.

A servicer method wrapped with :func:`maps_errors` turns a raised
:class:`NetPayError` into its status code with a ``google.rpc.ErrorInfo``
detail (domain ``netpay.v1``, reason = the error code, metadata = index,
seen, retry_after_s; never a word: protocol.md revision 1.1, change 1).
Clients call :func:`from_rpc_error` to get the typed error back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from netpay.chain import SEEN_BYTES
from netpay.encoding import b64url_encode, b64url_exact
from netpay.errors import BrokerUnavailable, NetPayError, Unavailable, error_for_code

__all__ = ["DOMAIN", "abort_with", "from_rpc_error", "maps_errors"]

DOMAIN = "netpay.v1"
log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _status_for(err: NetPayError) -> status_pb2.Status:
    code = getattr(grpc.StatusCode, err.grpc_status, grpc.StatusCode.INTERNAL)
    info = error_details_pb2.ErrorInfo(reason=err.code, domain=DOMAIN)
    if err.index is not None:
        info.metadata["index"] = str(err.index)
    if err.seen is not None:
        info.metadata["seen"] = b64url_encode(err.seen)
    if err.retry_after_s is not None:
        info.metadata["retry_after_s"] = str(err.retry_after_s)
    status = status_pb2.Status(code=code.value[0], message=err.detail[:1000])
    status.details.add().Pack(info)
    return status


def abort_with(context: grpc.ServicerContext, err: NetPayError) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(_status_for(err)))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def maps_errors(method: F) -> F:
    """Wrap a servicer method: NetPayError -> status; anything else -> INTERNAL."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except NetPayError as err:
            abort_with(context, err)
        except Exception:
            log.exception("unhandled error in %s", method.__qualname__)
            context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return cast(F, wrapper)


def from_rpc_error(
    exc: grpc.RpcError, *, unavailable: type[NetPayError] = Unavailable
) -> NetPayError:
    """The typed NetPayError a failed call stands for.

    Transport failures (UNAVAILABLE, DEADLINE_EXCEEDED without NetPay
    details) become ``unavailable`` (``BrokerUnavailable`` when the caller
    says so).
    """
    call = cast(grpc.Call, exc)
    status = rpc_status.from_call(call)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain != DOMAIN:
                    continue
                cls = error_for_code(info.reason)
                meta = dict(info.metadata)
                index = int(meta["index"]) if meta.get("index", "").isdigit() else None
                retry = meta.get("retry_after_s", "")
                return cls(
                    status.message,
                    index=index,
                    seen=b64url_exact(meta.get("seen"), SEEN_BYTES),
                    retry_after_s=int(retry) if retry.isdigit() else None,
                )
    code = call.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return unavailable(f"{code.name}: {call.details()}")
    if unavailable is BrokerUnavailable and code == grpc.StatusCode.UNIMPLEMENTED:
        return unavailable(f"{code.name}: {call.details()}")
    return NetPayError(f"{code.name}: {call.details()}")
