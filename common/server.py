"""Everything the four servers share: the aio server with health, reflection and the error-mapping
interceptor, the health monitor, background loops, metrics, and SIGTERM handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from sqlalchemy.ext.asyncio import AsyncEngine

from common import errors
from common.channels import server_credentials
from common.config import Settings, load_settings
from common.database import create_engine, describe_url, is_database_unavailable, ping
from common.logs import configure_logging, register_secret
from common.metrics import LOOP_CYCLE_SECONDS, LOOP_ERRORS, RPC_LATENCY, SERVING_STATUS, MetricsServer, serve_metrics

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The gRPC health name for liveness probes: SERVING from the moment the server listens until shutdown starts,
# whatever the database or Coinbase say (a restart fixes neither). Readiness asks for the service's own name.
LIVENESS_SERVICE_NAME = "liveness"
# How long the metrics port's /health and /live wait for the event loop to answer.
HTTP_HEALTH_TIMEOUT_SECONDS = 2.0

_CODES: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
]

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short description of what is missing."""


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


def _wrap_unary(method: str, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            return await inner(request, context)
        except (errors.DomainError, Exception) as exc:
            if isinstance(exc, asyncio.CancelledError | grpc.aio.AbortError):
                raise
            code = status_code_name(exc)
            await _abort(method, exc, context)
        finally:
            RPC_LATENCY.labels(method, code).observe(time.perf_counter() - started)

    return handler


def _wrap_stream(method: str, inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        started = time.perf_counter()
        code = "OK"
        try:
            async for response in inner(request_iterator, context):
                yield response
        except (errors.DomainError, Exception) as exc:
            if isinstance(exc, asyncio.CancelledError | grpc.aio.AbortError):
                raise
            code = status_code_name(exc)
            await _abort(method, exc, context)
        finally:
            RPC_LATENCY.labels(method, code).observe(time.perf_counter() - started)

    return handler


@dataclass
class ServiceParts:
    """What a service contributes to its server, built by its ``build`` function."""

    register: Sequence[Callable[[grpc.aio.Server], None]]
    readiness: Sequence[ReadinessCheck] = field(default_factory=list)
    background: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)


Builder = Callable[[Settings, AsyncEngine], Awaitable[ServiceParts]]


@dataclass(frozen=True)
class ServiceDefinition:
    name: str  # "generator", "bridge", "orchestrator", "executor"
    full_service_name: str  # "crypto_trading.v1.SignalGeneratorService"
    port_setting: str  # Settings attribute with the port
    metrics_port_setting: str
    build: Builder

    def port(self, settings: Settings) -> int:
        return int(getattr(settings, self.port_setting))

    def metrics_port(self, settings: Settings) -> int:
        return int(getattr(settings, self.metrics_port_setting))


class ServiceHost:
    """One running service: aio server, health, reflection, health monitor and background loops."""

    def __init__(self, definition: ServiceDefinition, settings: Settings, engine: AsyncEngine) -> None:
        self.definition = definition
        self.settings = settings
        self.engine = engine
        self.health = HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.problem: str | None = "starting"
        self.metrics: MetricsServer | None = None
        self._statuses: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._parts: ServiceParts | None = None
        self._stopped = asyncio.Event()

    async def start(self, port: int | None = None, host: str | None = None) -> int:
        """Build the service, bind (port 0 picks a free one) and start serving. Returns the bound port."""
        self._loop = asyncio.get_running_loop()
        await self._set_health(("", self.definition.full_service_name, LIVENESS_SERVICE_NAME), NOT_SERVING)
        self._parts = await self.definition.build(self.settings, self.engine)
        # so_reuseport off: a second copy of a service on the same port must fail, not share the port.
        server = grpc.aio.server(interceptors=[DomainErrorInterceptor()], options=[("grpc.so_reuseport", 0)])
        for register in self._parts.register:
            register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (self.definition.full_service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        bind = f"{host or self.settings.bind_host}:{self.definition.port(self.settings) if port is None else port}"
        credentials = server_credentials(self.settings)
        try:
            self.port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise errors.StartupError(f"cannot listen on {bind}: the port is in use or the address is invalid")
        await server.start()
        self.server = server
        await self._set_health((LIVENESS_SERVICE_NAME,), SERVING)
        await self.refresh_health()
        self._tasks.append(asyncio.create_task(self._monitor_health(), name="health-monitor"))
        for job in self._parts.background:
            self._tasks.append(asyncio.create_task(_run_job(job), name=getattr(job, "__name__", "job")))
        log.info(
            "%s listening on %s (database %s)",
            self.definition.name,
            bind.rsplit(":", 1)[0] + f":{self.port}",
            describe_url(self.settings.database_url),
        )
        return self.port

    async def refresh_health(self) -> None:
        problem = await ping(self.engine)
        if problem is None and self._parts is not None:
            for check in self._parts.readiness:
                problem = await check()
                if problem:
                    break
        if problem != self.problem:
            if problem:
                log.warning("%s NOT_SERVING: %s", self.definition.name, problem)
            else:
                log.info("%s SERVING", self.definition.name)
        self.problem = problem
        status = NOT_SERVING if problem else SERVING
        if not self._stopped.is_set():
            await self._set_health(("", self.definition.full_service_name), status)

    async def _set_health(self, names: Sequence[str], status: int) -> None:
        for name in names:
            await self.health.set(name, status)
            self._statuses[name] = status
        if self.definition.full_service_name in names:
            SERVING_STATUS.labels(self.definition.name).set(1 if status == SERVING else 0)

    async def health_report(self, name: str | None = None) -> dict[str, Any]:
        """What the gRPC health service reports for ``name`` (the service's own name by default), as JSON-able
        data for the metrics port's /health: service, status and, when not serving, the reason."""
        name = self.definition.full_service_name if name is None else name
        status = self._statuses.get(name, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        report: dict[str, Any] = {
            "service": name,
            "name": self.definition.name,
            "status": health_pb2.HealthCheckResponse.ServingStatus.Name(status),
        }
        if status != SERVING:
            report["reason"] = "shutting down" if self._stopped.is_set() else self.problem
        return report

    def _report_from_thread(self, name: str | None) -> dict[str, Any]:
        """Called by the metrics HTTP thread: asks the event loop, so a stuck or stopped loop is not healthy."""
        if self._loop is None or self._loop.is_closed():
            raise RuntimeError("the event loop is not running")
        future = asyncio.run_coroutine_threadsafe(self.health_report(name), self._loop)
        return future.result(timeout=HTTP_HEALTH_TIMEOUT_SECONDS)

    def _live_report_from_thread(self) -> dict[str, Any]:
        report = self._report_from_thread(LIVENESS_SERVICE_NAME)
        if report["status"] == "SERVING":
            report["status"] = "ALIVE"
        return report

    def start_metrics(self, port: int, host: str | None = None) -> int:
        """Serve /metrics, /health and /live on ``port`` (0: any free port). Returns the bound port."""
        bind = host or self.settings.bind_host
        try:
            self.metrics = serve_metrics(
                port,
                bind,
                health=lambda: self._report_from_thread(None),
                live=self._live_report_from_thread,
            )
        except OSError:
            raise errors.StartupError(
                f"cannot serve metrics on {bind}:{port}: the port is in use or the address is invalid"
            ) from None
        return self.metrics.port

    async def _monitor_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_check_interval_seconds)
            try:
                await self.refresh_health()
            except Exception:
                log.exception("health check failed")

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, stop background loops, finish in-flight RPCs within the grace period,
        dispose the engine."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        await self.health.enter_graceful_shutdown()
        for name in self._statuses:
            self._statuses[name] = NOT_SERVING
        SERVING_STATUS.labels(self.definition.name).set(0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.server is not None:
            await self.server.stop(self.settings.shutdown_grace_seconds if grace is None else grace)
        if self._parts is not None:
            for hook in self._parts.on_stop:
                try:
                    await hook()
                except Exception:
                    log.exception("stop hook failed")
        await self.engine.dispose()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)
            self.metrics = None
        log.info("%s stopped", self.definition.name)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def _run_job(job: Callable[[], Awaitable[None]]) -> None:
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background job %s crashed", getattr(job, "__name__", job))


async def run_periodically(
    name: str,
    interval: float,
    cycle: Callable[[], Awaitable[object]],
    *,
    wake: asyncio.Event | None = None,
    initial_delay: float = 0.0,
) -> None:
    """Run ``cycle`` every ``interval`` seconds (or earlier when ``wake`` is set), forever. A failing cycle is
    logged and counted; the loop goes on."""
    await asyncio.sleep(initial_delay)
    while True:
        started = time.perf_counter()
        try:
            await cycle()
        except asyncio.CancelledError:
            raise
        except Exception:
            LOOP_ERRORS.labels(name).inc()
            log.exception("%s cycle failed", name)
        finally:
            LOOP_CYCLE_SECONDS.labels(name).observe(time.perf_counter() - started)
        if wake is None:
            await asyncio.sleep(interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
            wake.clear()


@contextlib.asynccontextmanager
async def running_service(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> AsyncIterator[ServiceHost]:
    """Start a service in this event loop (tests, benchmarks). Stops it on exit. With ``metrics_port`` (0: any
    free port) it also serves /metrics, /health and /live (``service.metrics.port``)."""
    engine = create_engine(settings.database_url)
    service = ServiceHost(definition, settings, engine)
    try:
        await service.start(port=port, host=host)
        if metrics_port is not None:
            service.start_metrics(metrics_port, host)
        yield service
    finally:
        await service.stop(grace=1.0)


async def _serve(definition: ServiceDefinition, settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    service = ServiceHost(definition, settings, engine)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    try:
        await service.start()
    except BaseException:
        await engine.dispose()
        raise
    if definition.metrics_port(settings):
        try:
            service.start_metrics(definition.metrics_port(settings))
        except errors.StartupError:
            await service.stop(grace=0)
            raise
    await stop_requested.wait()
    log.info("%s: shutdown requested, draining for up to %ss", definition.name, settings.shutdown_grace_seconds)
    await service.stop()
    return 0


def run(definition: ServiceDefinition, environ: dict[str, str] | None = None) -> int:
    """Entry point of ``python -m <svc>`` and ``cts serve <svc>``: returns the process exit code."""
    try:
        settings = load_settings(environ)
    except errors.ConfigError as exc:
        print(f"{definition.name}: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, service=definition.name)
    for secret in (settings.coinbase_api_private_key, settings.coinbase_api_key_name):
        register_secret(secret.get_secret_value() if secret else None)
    try:
        return asyncio.run(_serve(definition, settings))
    except errors.StartupError as exc:
        print(f"{definition.name}: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
