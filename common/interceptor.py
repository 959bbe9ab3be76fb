"""The one gRPC server interceptor of the four services: domain errors become status codes, a lost database
UNAVAILABLE, anything else INTERNAL without internals; every RPC's latency is recorded.

A request that is not valid protobuf (of any method, health and reflection included) is answered
INVALID_ARGUMENT with a message and reaches no servicer, and it is logged at most once per minute per method (the
next line counts the ones left out), instead of grpc's UNKNOWN "Unexpected DecodeError" with an ERROR traceback per
request: the method's request deserializer is wrapped so that a DecodeError becomes a marker that the wrapped
handler rejects. In a request stream the requests before the malformed one are handled and answered first."""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from common import errors
from common.database import is_database_unavailable
from common.metrics import RPC_LATENCY

log = logging.getLogger(__name__)
MALFORMED_LOG_INTERVAL_SECONDS = 60.0

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


class RateLimitedLog:
    """Logs a recurring problem at most once per ``interval`` seconds per key; the line counts the occurrences
    it left out since the previous one."""

    def __init__(
        self, interval: float = MALFORMED_LOG_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any) -> bool:
        """Log ``message % args`` (WARNING) unless ``key`` was logged within the interval. True when logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return False
        self._last[key] = now
        left_out = self._left_out.pop(key, 0)
        if left_out:
            log.warning(message + " (and %d more since the last report)", *args, left_out)
        else:
            log.warning(message, *args)
        return True


# Rejects a malformed request: logs it (rate-limited) and aborts the RPC with INVALID_ARGUMENT.
_Reject = Callable[["grpc.aio.ServicerContext[Any, Any]"], Awaitable[None]]


class _Malformed:
    """What a request that is not valid protobuf deserializes to; the wrapped handler rejects it."""

    __slots__ = ()


_MALFORMED = _Malformed()


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _MALFORMED

    return deserialize


def _message_name(deserializer: Callable[[bytes], Any]) -> str:
    """The full protobuf name of the message a deserializer reads (``Message.FromString``), or "protobuf"."""
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "protobuf"))


class DomainErrorInterceptor(_Interceptor):
    """The one place where domain errors become gRPC status codes (and RPC latency is recorded), and where a
    request that is not valid protobuf is answered INVALID_ARGUMENT (logged at most once per minute per method).

    Unexpected exceptions are logged and answered INTERNAL with a generic message (no internals, no secrets)."""

    def __init__(self, malformed_log: RateLimitedLog | None = None) -> None:
        self.malformed_log = malformed_log or RateLimitedLog()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        observed = not method.startswith(("/grpc.health", "/grpc.reflection"))
        deserializer = handler.request_deserializer
        if deserializer is None:  # raw bytes: nothing to decode, nothing malformed
            reject: _Reject | None = None
        else:
            reject = self._rejecter(method, _message_name(deserializer))
            deserializer = _tolerant(deserializer)
        serializer = handler.response_serializer
        if handler.unary_unary is not None and _is_async(handler.unary_unary):
            behavior = _check_unary(handler.unary_unary, reject)
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, behavior) if observed else behavior,
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.unary_stream is not None and _is_async(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _check_unary(handler.unary_stream, reject),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.stream_unary is not None and _is_async(handler.stream_unary):
            return grpc.stream_unary_rpc_method_handler(
                _check_stream(handler.stream_unary, reject),
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        if handler.stream_stream is not None and _is_async(handler.stream_stream):
            behavior = _check_stream(handler.stream_stream, reject)
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(method, behavior) if observed else behavior,
                request_deserializer=deserializer,
                response_serializer=serializer,
            )
        return handler

    def _rejecter(self, method: str, message_name: str) -> _Reject:
        details = f"the request is not a valid {message_name} message"

        async def reject(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            self.malformed_log.warning(method, "rpc %s -> INVALID_ARGUMENT: %s", method, details)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, details)

        return reject


def _is_async(behavior: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)


def _check_unary(inner: Callable[..., Any], reject: _Reject | None) -> Callable[..., Any]:
    """``inner`` (a coroutine or async generator function) behind a check of its one request."""
    if reject is None:
        return inner
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if request is _MALFORMED:
                await reject(context)
            async for response in inner(request, context):
                yield response

        return generator

    async def coroutine(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request is _MALFORMED:
            await reject(context)
        return await inner(request, context)

    return coroutine


def _check_stream(inner: Callable[..., Any], reject: _Reject | None) -> Callable[..., Any]:
    """``inner`` (a coroutine or async generator function) reading its requests through a check of each: a
    malformed one ends the requests there (no exception reaches the servicer or its tasks); the requests before it
    are handled and answered as usual, then the RPC ends with INVALID_ARGUMENT."""
    if reject is None:
        return inner

    async def until_malformed(requests: AsyncIterator[Any], seen: list[bool]) -> AsyncIterator[Any]:
        async for request in requests:
            if request is _MALFORMED:
                seen.append(True)
                return
            yield request

    if inspect.isasyncgenfunction(inner):

        async def generator(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            seen: list[bool] = []
            async for response in inner(until_malformed(requests, seen), context):
                yield response
            if seen:
                await reject(context)

        return generator

    async def coroutine(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        seen: list[bool] = []
        response = await inner(until_malformed(requests, seen), context)
        if seen:
            await reject(context)
        return response

    return coroutine


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
    except grpc.aio.AbortError:  # the servicer (or a malformed request) aborted with its own status
        raise
    except Exception as exc:
        code = status_code_name(exc)
        await _abort(method, exc, context)
    finally:
        if code == "OK" and (status := context.code()) is not None:  # aborted or set by the servicer
            code = status.name
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
