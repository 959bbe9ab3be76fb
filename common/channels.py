"""Client channels to the other services, plaintext or (mutual) TLS from the same certificate settings."""

from __future__ import annotations

import grpc

from common.config import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for a server, or None for plaintext. With GRPC_TLS_CA_FILE, clients must present a
    certificate signed by that CA (mutual TLS)."""
    if settings.grpc_tls_cert_file is None or settings.grpc_tls_key_file is None:
        return None
    key = settings.grpc_tls_key_file.read_bytes()
    cert = settings.grpc_tls_cert_file.read_bytes()
    ca = settings.grpc_tls_ca_file.read_bytes() if settings.grpc_tls_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def create_channel(address: str, settings: Settings) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address``. TLS when GRPC_TLS_CA_FILE is set (presenting our own certificate
    when one is configured), plaintext otherwise."""
    options = [("grpc.keepalive_time_ms", 30_000), ("grpc.enable_retries", 0)]
    if settings.grpc_tls_ca_file is None:
        return grpc.aio.insecure_channel(address, options=options)
    ca = settings.grpc_tls_ca_file.read_bytes()
    key = settings.grpc_tls_key_file.read_bytes() if settings.grpc_tls_key_file else None
    cert = settings.grpc_tls_cert_file.read_bytes() if settings.grpc_tls_cert_file else None
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.aio.secure_channel(address, credentials, options=options)
