"""The one gRPC server interceptor of the four services: domain errors become status codes, a lost database
UNAVAILABLE, anything else INTERNAL without internals; every RPC's latency is recorded."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from common import errors
from common.database import is_database_unavailable
from common.metrics import RPC_LATENCY

log = logging.getLogger(__name__)

_CODES: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
]


def status_code_for(exc: errors.DomainError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor
    _Handler = grpc.RpcMethodHandler


class DomainErrorInterceptor(_Interceptor):
    """The one place where domain errors become gRPC status codes (and RPC latency is recorded).

    Unexpected exceptions are logged and answered INTERNAL with a generic message (no internals, no secrets)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(method, handler.stream_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def status_code_name(exc: BaseException) -> str:
    """The gRPC status code (name) any exception of a handler stands for: domain errors by kind, a lost database
    UNAVAILABLE (retryable), anything else INTERNAL. Also used for per-item codes inside streams."""
    if isinstance(exc, errors.DomainError):
        return status_code_for(exc).name
    if is_database_unavailable(exc):
        return grpc.StatusCode.UNAVAILABLE.name
    return grpc.StatusCode.INTERNAL.name


async def _abort(method: str, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if is_database_unavailable(exc):  # retryable: UNAVAILABLE, without driver details (they can carry host names)
        log.warning("rpc %s -> UNAVAILABLE: database unavailable (%s)", method, type(exc).__name__)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable; retry later")
    if isinstance(exc, errors.DomainError):
        code = status_code_for(exc)
        log.info("rpc %s -> %s: %s", method, code.name, exc)
        await context.abort(code, str(exc) or code.name)
    log.exception("rpc %s failed unexpectedly", method)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")


@contextlib.asynccontextmanager
async def _observed(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    """Around one RPC: an exception becomes its status (see _abort), and the latency is recorded with the code."""
    started = time.perf_counter()
    code = "OK"
    try:
        yield
    except grpc.aio.AbortError:  # the servicer aborted with its own status
        raise
    except Exception as exc:
        code = status_code_name(exc)
        await _abort(method, exc, context)
    finally:
        RPC_LATENCY.labels(method, code).observe(time.perf_counter() - started)


def _wrap_unary(method: str, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with _observed(method, context):
            return await inner(request, context)

    return handler


def _wrap_stream(method: str, inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async with _observed(method, context):
            async for response in inner(request_iterator, context):
                yield response

    return handler
