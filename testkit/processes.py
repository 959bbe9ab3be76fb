"""The services as real processes (``python -m <package>``) on free ports against one database: each with its own
environment (so replicas can be wired to different peers), a log file, and waits for gRPC health SERVING."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from common.services import SERVICES, ServiceInfo, service
from testkit.ports import address

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNREACHABLE = "127.0.0.1:1"
# The benchmarks' and the multi-process tests' configuration: candles from the database, every signal an eligible
# BUY, the trade cap lifted, paper cash plentiful, and the loops parked for a day (work comes through RPCs and
# nudges only).
PIPELINE_ENV: Final = {
    "MARKET_DATA_SOURCE": "database",
    "BUY_THRESHOLD": "0.01",
    "BRIDGE_MIN_CONFIDENCE": "0.01",
    "MAX_TRADES_PER_WINDOW": "1000000",
    "PAPER_STARTING_CASH_USD": "1000000000",
    "GENERATOR_INTERVAL_SECONDS": "86400",
    "BRIDGE_INTERVAL_SECONDS": "86400",
    "ORCHESTRATOR_INTERVAL_SECONDS": "86400",
}


async def health_status(target: str, service_name: str, timeout: float = 2.0) -> int:
    """The health status of ``service_name`` at ``target``, or -1 when the server does not answer."""
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=timeout)
            return int(response.status)
    except grpc.aio.AioRpcError:
        return -1


async def wait_serving(target: str, service_name: str, within: float = 60.0) -> float:
    """Seconds until ``service_name`` at ``target`` answers SERVING (raises TimeoutError after ``within``)."""
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.perf_counter() - started < within:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=1)
                if response.status == SERVING:
                    return time.perf_counter() - started
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{service_name or 'the server'} at {target} not SERVING within {within}s")


@dataclass
class ServiceProcess:
    info: ServiceInfo
    name: str  # for example "executor-a"
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def kind(self) -> str:
        return self.info.name

    @property
    def address(self) -> str:
        return address(self.port)

    @property
    def full_service_name(self) -> str:
        return self.info.full_service_name

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ServiceProcesses:
    """Starts service processes against ``database_url``; every process gets ``common_env`` plus its own overrides.
    Metrics servers are off, peers default to an unreachable address, logs go to ``log_dir/<name>.log``."""

    def __init__(self, database_url: str, log_dir: Path, common_env: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.common_env = dict(common_env or {})
        self.services: list[ServiceProcess] = []

    def environment(self, kind: str, port: int, overrides: Mapping[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "BIND_HOST": "127.0.0.1",
                "LOG_LEVEL": "WARNING",
                "HEALTH_CHECK_INTERVAL_SECONDS": "1",
                "SHUTDOWN_GRACE_SECONDS": "2",
            }
        )
        for info in SERVICES:
            env[f"{info.env_prefix}_METRICS_PORT"] = "0"
            env[f"{info.env_prefix}_ADDR"] = UNREACHABLE
        env[f"{service(kind).env_prefix}_PORT"] = str(port)
        env.update(self.common_env)
        env.update(overrides)
        return env

    def spawn(self, kind: str, name: str, port: int, overrides: Mapping[str, str] | None = None) -> ServiceProcess:
        """Start ``python -m <package of kind>`` listening on ``port`` (returns at once; see wait_serving)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        info = service(kind)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", info.package],
                env=self.environment(kind, port, overrides or {}),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started = ServiceProcess(info, name, port, process, log)
        self.services.append(started)
        return started

    async def wait_serving(self, within: float = 60.0) -> None:
        """Every started service answers SERVING on its own full service name (raises AssertionError otherwise)."""
        await asyncio.gather(*(self.wait_one(s, within) for s in self.services))

    @staticmethod
    async def wait_one(service_process: ServiceProcess, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not service_process.running:
                raise AssertionError(
                    f"{service_process.name} exited with {service_process.process.returncode}:\n"
                    f"{service_process.log_tail()}"
                )
            if await health_status(service_process.address, service_process.full_service_name) == SERVING:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{service_process.name} not SERVING within {within}s:\n{service_process.log_tail()}")

    def stop(self) -> None:
        """SIGTERM every service, wait for each (SIGKILL after 15 s)."""
        for started in self.services:
            if started.running:
                started.process.terminate()
        for started in self.services:
            try:
                started.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait(timeout=15)
        self.services.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log_tail()}" for s in self.services)


@asynccontextmanager
async def stopped_at_the_end(processes: ServiceProcesses, engine: AsyncEngine) -> AsyncIterator[None]:
    """Run a test's body against ``processes``: print their logs if it fails, and always stop them and dispose
    of ``engine``."""
    try:
        yield
    except BaseException:
        print(processes.logs())
        raise
    finally:
        await asyncio.to_thread(processes.stop)
        await engine.dispose()
