"""Optional TLS and mutual TLS between services, configured by certificate paths (GRPC_TLS_*)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bridge_svc.server import DEFINITION as BRIDGE
from common.channels import create_channel
from common.server import running_service
from tests.conftest import make_settings
from tests.support.certificates import make_pki

SERVING = health_pb2.HealthCheckResponse.SERVING


async def _check(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=BRIDGE.full_service_name), timeout=5)
    return int(response.status)


async def test_tls_server(sqlite_url: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server_settings = make_settings(sqlite_url, grpc_tls_cert_file=pki.server_cert, grpc_tls_key_file=pki.server_key)
    async with running_service(BRIDGE, server_settings) as service:
        address = f"localhost:{service.port}"
        client_settings = make_settings(sqlite_url, grpc_tls_ca_file=pki.ca_cert)
        channel = create_channel(address, client_settings)
        try:
            assert await _check(channel) == SERVING
        finally:
            await channel.close(None)
        # A plaintext client cannot talk to a TLS server.
        async with grpc.aio.insecure_channel(address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _check(plain)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate(sqlite_url: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    mtls = {"grpc_tls_cert_file": pki.server_cert, "grpc_tls_key_file": pki.server_key, "grpc_tls_ca_file": pki.ca_cert}
    async with running_service(BRIDGE, make_settings(sqlite_url, **mtls)) as service:
        address = f"localhost:{service.port}"
        # The orchestrator's side: CA + its own client certificate.
        client = make_settings(
            sqlite_url,
            grpc_tls_ca_file=pki.ca_cert,
            grpc_tls_cert_file=pki.client_cert,
            grpc_tls_key_file=pki.client_key,
        )
        channel = create_channel(address, client)
        try:
            assert await _check(channel) == SERVING
        finally:
            await channel.close(None)
        # Trusting the CA but presenting no certificate: refused.
        anonymous = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _check(anonymous)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await anonymous.close(None)
