"""The registry of the four services (common.services) agrees with the services' own definitions, the settings
and the contract."""

from __future__ import annotations

import importlib

import pytest

from common.config import load_settings
from common.service_host import ServiceDefinition
from common.services import SERVICE_NAMES, SERVICES, ServiceInfo, service
from crypto_trading.v1 import bridge_pb2, executor_pb2, generator_pb2, orchestrator_pb2


@pytest.mark.parametrize("info", SERVICES, ids=lambda info: info.name)
def test_the_registry_is_the_service_definition(info: ServiceInfo) -> None:
    module = importlib.import_module(f"{info.package}.server")
    definition = module.DEFINITION
    assert isinstance(definition, ServiceDefinition)
    assert (definition.name, definition.full_service_name) == (info.name, info.full_service_name)
    assert definition.port_setting == info.setting("port")
    assert definition.metrics_port_setting == info.setting("metrics_port")


def test_every_service_of_the_contract_is_registered() -> None:
    contract = {
        s.full_name
        for module in (generator_pb2, bridge_pb2, orchestrator_pb2, executor_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    assert {info.full_service_name for info in SERVICES} == contract


def test_settings_ports_addresses_and_environment_names() -> None:
    settings = load_settings(
        {"SIGNAL_GENERATOR_PORT": "7001", "SIGNAL_GENERATOR_ADDR": "gen:7001", "SIGNAL_GENERATOR_METRICS_PORT": "7002"}
    )
    generator = service("generator")
    assert generator.env_prefix == "SIGNAL_GENERATOR"
    assert (generator.port(settings), generator.addr(settings), generator.metrics_port(settings)) == (
        7001,
        "gen:7001",
        7002,
    )
    defaults = load_settings({})
    assert {info.name: info.port(defaults) for info in SERVICES} == {
        "executor": 8024,
        "orchestrator": 8023,
        "bridge": 8022,
        "generator": 8025,
    }
    assert {info.name: info.addr(defaults) for info in SERVICES} == {
        info.name: f"localhost:{info.port(defaults)}" for info in SERVICES
    }


def test_start_order_exit_codes_and_names() -> None:
    assert SERVICE_NAMES == ("executor", "orchestrator", "bridge", "generator")  # downstream first
    assert [info.exit_code for info in SERVICES] == [10, 11, 12, 13]  # README: `cts up` exit codes
    assert service("signal-bridge") is service("bridge")
    assert [info.kubernetes_name for info in SERVICES] == [
        "trade-executor",
        "trade-orchestrator",
        "signal-bridge",
        "signal-generator",
    ]
    with pytest.raises(KeyError):
        service("nope")
