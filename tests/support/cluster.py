"""Real service processes for the reliability tests: ``python -m <service>`` on free ports against one database,
each with its own environment (so replicas can be wired to different peers), health waits and log files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# kind -> (module, settings prefix, full gRPC service name)
SERVICES: dict[str, tuple[str, str, str]] = {
    "generator": ("generator_svc", "SIGNAL_GENERATOR", "crypto_trading.v1.SignalGeneratorService"),
    "bridge": ("bridge_svc", "SIGNAL_BRIDGE", "crypto_trading.v1.SignalBridgeService"),
    "orchestrator": ("orchestrator_svc", "TRADE_ORCHESTRATOR", "crypto_trading.v1.TradeOrchestratorService"),
    "executor": ("executor_svc", "TRADE_EXECUTOR", "crypto_trading.v1.TradeExecutorService"),
}
UNREACHABLE = "127.0.0.1:1"


def address(port: int) -> str:
    return f"127.0.0.1:{port}"


async def health_status(target: str, service: str) -> int:
    """The health status of ``service`` at ``target``, or -1 when the server does not answer."""
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            return int(response.status)
    except grpc.aio.AioRpcError:
        return -1


@dataclass
class ServiceProcess:
    kind: str
    name: str  # for example "executor-a"
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        return address(self.port)

    @property
    def full_service_name(self) -> str:
        return SERVICES[self.kind][2]

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
        for _, prefix, _ in SERVICES.values():
            env[f"{prefix}_METRICS_PORT"] = "0"
            env[f"{prefix}_ADDR"] = UNREACHABLE
        env[f"{SERVICES[kind][1]}_PORT"] = str(port)
        env.update(self.common_env)
        env.update(overrides)
        return env

    def spawn(self, kind: str, name: str, port: int, overrides: Mapping[str, str] | None = None) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", SERVICES[kind][0]],
                env=self.environment(kind, port, overrides or {}),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        service = ServiceProcess(kind, name, port, process, log)
        self.services.append(service)
        return service

    async def wait_serving(self, within: float = 60.0) -> None:
        """Every started service answers SERVING on its own full service name (raises AssertionError otherwise)."""
        await asyncio.gather(*(self._wait_one(s, within) for s in self.services))

    @staticmethod
    async def _wait_one(service: ServiceProcess, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not service.running:
                raise AssertionError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
            if await health_status(service.address, service.full_service_name) == SERVING:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{service.name} not SERVING within {within}s:\n{service.log_tail()}")

    def stop(self) -> None:
        for service in self.services:
            if service.running:
                service.process.terminate()
        for service in self.services:
            try:
                service.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=15)
        self.services.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log_tail()}" for s in self.services)
