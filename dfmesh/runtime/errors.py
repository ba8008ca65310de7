"""The interceptor that maps the domain errors of `dfmesh.errors` (re-exported here) to gRPC
status codes.

Any other exception becomes INTERNAL with a generic message; the stack trace goes to the
log, never to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from dfmesh.errors import (
    DeadlineExceeded,
    DfmeshError,
    InvalidInput,
    LimitExceeded,
    ModelIntegrityError,
    NotReady,
    UpstreamUnavailable,
)

__all__ = ["DeadlineExceeded", "DfmeshError", "ErrorMappingInterceptor", "InvalidInput",
           "LimitExceeded", "ModelIntegrityError", "NotReady", "UpstreamUnavailable",
           "status_for"]

log = logging.getLogger(__name__)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and caller-facing message for an exception."""
    if isinstance(exc, DfmeshError):
        return grpc.StatusCode[exc.status], exc.message
    if isinstance(exc, aio.AioRpcError):
        # An upstream call failed and nobody translated it: keep its code, name the hop.
        return exc.code(), f"upstream call failed: {exc.details()}"
    return grpc.StatusCode.INTERNAL, "internal error; the server log has the details"


async def _abort(context: aio.ServicerContext, exc: BaseException, method: str) -> None:
    code, message = status_for(exc)
    if isinstance(exc, DfmeshError):
        log.info("request failed: %s", message, extra={"method": method, "code": code.name})
        if exc.retry_after_seconds is not None:
            context.set_trailing_metadata((("retry-after", f"{exc.retry_after_seconds:g}"),))
    else:
        log.exception("unhandled error in %s", method, extra={"code": code.name})
    await context.abort(code, message)


class ErrorMappingInterceptor(aio.ServerInterceptor):
    """Turns domain errors raised in any handler (unary or streaming) into status codes."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        def wrap_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request_or_iterator: Any, context: aio.ServicerContext) -> Any:
                try:
                    return await behavior(request_or_iterator, context)
                except aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to a status code
                    await _abort(context, exc, method)
            return wrapped

        def wrap_stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
            async def wrapped(request_or_iterator: Any, context: aio.ServicerContext):
                try:
                    async for response in behavior(request_or_iterator, context):
                        yield response
                except aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to a status code
                    await _abort(context, exc, method)
            return wrapped

        kwargs = dict(request_deserializer=handler.request_deserializer,
                      response_serializer=handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrap_stream(handler.unary_stream), **kwargs)
        return grpc.stream_stream_rpc_method_handler(wrap_stream(handler.stream_stream), **kwargs)
