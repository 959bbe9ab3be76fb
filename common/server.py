"""Entry points of the four services: ``run`` (``python -m <svc>``, ``cts serve``: settings, logging, SIGTERM,
exit code) and ``running_service`` (in this event loop, for tests and benchmarks). The parts: common.interceptor
(status codes), common.service_host (server, health, metrics port, background jobs), common.loops (periodic
cycles)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator

from common import errors
from common.config import Settings, load_settings
from common.database import create_engine
from common.logs import configure_logging, register_secret
from common.service_host import ServiceDefinition, ServiceHost

log = logging.getLogger(__name__)


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
