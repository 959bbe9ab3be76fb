"""One running service: the aio server with health, reflection and the interceptor, the health monitor (the
database and the service's readiness checks), the metrics port's /health and /live, background jobs, and a
graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from sqlalchemy.ext.asyncio import AsyncEngine

from common import errors
from common.channels import server_credentials
from common.config import Settings
from common.database import describe_url, ping
from common.interceptor import DomainErrorInterceptor
from common.metrics import SERVING_STATUS, MetricsServer, serve_metrics

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The gRPC health name for liveness probes: SERVING from the moment the server listens until shutdown starts,
# whatever the database or Coinbase say (a restart fixes neither). Readiness asks for the service's own name.
LIVENESS_SERVICE_NAME = "liveness"
# How long the metrics port's /health and /live wait for the event loop to answer.
HTTP_HEALTH_TIMEOUT_SECONDS = 2.0

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short description of what is missing."""


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
    except Exception:
        log.exception("background job %s crashed", getattr(job, "__name__", job))
