"""Coinbase Advanced Trade API authentication: a fresh ES256 JWT for every request, as an ``httpx.Auth``.

Header: kid = key name, nonce = random hex, typ = JWT. Claims: sub = key name, iss = "cdp", nbf = now,
exp = now + 120 s, uri = "METHOD host/path" (the request's host, with its port when it is not the default, and
its path without the query string). The token is made when httpx sends the request, so a retried request gets a
new one; it only ever travels in the Authorization header (never in a log line or an error message)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from common.errors import StartupError

KEY_NAME_PREFIX = "organizations/"
TOKEN_LIFETIME_SECONDS = 120


@dataclass(frozen=True)
class CoinbaseCredentials:
    key_name: str
    private_key: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:  # never print the key
        return "CoinbaseCredentials(key_name=[REDACTED], private_key=[REDACTED])"


def load_credentials(key_name: str | None, private_key_pem: str | None) -> CoinbaseCredentials:
    """Validate the live-mode credentials; messages never contain the values."""
    if not key_name:
        raise StartupError("COINBASE_API_KEY_NAME is required in live mode")
    if not private_key_pem:
        raise StartupError("COINBASE_API_PRIVATE_KEY is required in live mode")
    if not key_name.startswith(KEY_NAME_PREFIX) or "/apiKeys/" not in key_name:
        raise StartupError("COINBASE_API_KEY_NAME must look like organizations/{org}/apiKeys/{id}")
    pem = private_key_pem.replace("\\n", "\n").strip().encode()
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise StartupError("COINBASE_API_PRIVATE_KEY is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise StartupError("COINBASE_API_PRIVATE_KEY must be an EC P-256 key (ES256)")
    return CoinbaseCredentials(key_name, key)


def sign(credentials: CoinbaseCredentials, uri: str, now: float) -> str:
    issued = int(now)
    claims = {
        "sub": credentials.key_name,
        "iss": "cdp",
        "nbf": issued,
        "exp": issued + TOKEN_LIFETIME_SECONDS,
        "uri": uri,
    }
    headers = {"kid": credentials.key_name, "nonce": secrets.token_hex(16), "typ": "JWT"}
    return jwt.encode(claims, credentials.private_key, algorithm="ES256", headers=headers)


def request_uri(request: httpx.Request) -> str:
    """The ``uri`` claim of ``request``: "METHOD host[:port]/path", the path as sent (still percent-encoded)."""
    path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
    return f"{request.method.upper()} {request.url.netloc.decode('ascii')}{path}"


class CoinbaseJWTAuth(httpx.Auth):
    """Signs every request httpx sends (retries included) with a fresh token bound to its method, host and path."""

    def __init__(self, credentials: CoinbaseCredentials, *, clock: Callable[[], float] = time.time) -> None:
        self._credentials = credentials
        self._clock = clock

    def __repr__(self) -> str:
        return "CoinbaseJWTAuth([REDACTED])"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = sign(self._credentials, request_uri(request), self._clock())
        request.headers["Authorization"] = f"Bearer {token}"
        yield request
