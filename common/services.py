"""The registry of the four services: what cts, the tests and the benchmarks need to know about each one without
importing it (the services themselves pull in gRPC servers, models and pandas).

Each service's own ``server.py`` keeps its ServiceDefinition (what it builds and serves); tests/common/
test_services.py checks that the two agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # only for annotations: cts imports this module at start-up, before any settings are read
    from common.config import Settings


PROTO_PACKAGE: Final = "crypto_trading.v1"


@dataclass(frozen=True)
class ServiceInfo:
    name: str  # "generator": `cts serve generator`, log and metric labels
    grpc_service: str  # "SignalGeneratorService", in PROTO_PACKAGE
    settings_prefix: str  # "signal_generator": Settings fields <prefix>_port, <prefix>_addr, <prefix>_metrics_port
    exit_code: int  # what `cts up` exits with when this service dies

    @property
    def package(self) -> str:
        """generator_svc: `python -m generator_svc`."""
        return f"{self.name}_svc"

    @property
    def full_service_name(self) -> str:
        """The gRPC service, which is also its health name."""
        return f"{PROTO_PACKAGE}.{self.grpc_service}"

    @property
    def kubernetes_name(self) -> str:
        """signal-generator: its Deployment and Service in k8s/."""
        return self.settings_prefix.replace("_", "-")

    @property
    def env_prefix(self) -> str:
        """SIGNAL_GENERATOR: the environment variables are <prefix>_PORT, <prefix>_ADDR and <prefix>_METRICS_PORT."""
        return self.settings_prefix.upper()

    def setting(self, suffix: str) -> str:
        """The Settings field <prefix>_<suffix>: "port", "metrics_port" or "addr" (where its clients call it)."""
        return f"{self.settings_prefix}_{suffix}"

    def port(self, settings: Settings) -> int:
        return int(getattr(settings, self.setting("port")))

    def metrics_port(self, settings: Settings) -> int:
        return int(getattr(settings, self.setting("metrics_port")))

    def addr(self, settings: Settings) -> str:
        return str(getattr(settings, self.setting("addr")))


EXECUTOR: Final = ServiceInfo("executor", "TradeExecutorService", "trade_executor", exit_code=10)
ORCHESTRATOR: Final = ServiceInfo("orchestrator", "TradeOrchestratorService", "trade_orchestrator", exit_code=11)
BRIDGE: Final = ServiceInfo("bridge", "SignalBridgeService", "signal_bridge", exit_code=12)
GENERATOR: Final = ServiceInfo("generator", "SignalGeneratorService", "signal_generator", exit_code=13)

# Start order: downstream first, so each service's peer is up before it calls it (`cts up` stops them in reverse).
SERVICES: Final = (EXECUTOR, ORCHESTRATOR, BRIDGE, GENERATOR)
SERVICE_NAMES: Final = tuple(s.name for s in SERVICES)


def service(name: str) -> ServiceInfo:
    """The service called ``name`` (generator, bridge, orchestrator, executor) or its Kubernetes name."""
    for info in SERVICES:
        if name in (info.name, info.kubernetes_name):
            return info
    raise KeyError(name)
