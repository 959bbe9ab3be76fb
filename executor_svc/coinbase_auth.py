"""Coinbase Advanced Trade API authentication: a fresh ES256 JWT for every request.

Header: kid = key name, nonce = random hex, typ = JWT. Claims: sub = key name, iss = "cdp", nbf = now,
exp = now + 120 s, uri = "METHOD host/path" (host of the base URL, path without the query string)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from common.errors import StartupError

KEY_NAME_PREFIX = "organizations/"


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


def build_jwt(credentials: CoinbaseCredentials, method: str, url: str, now: float | None = None) -> str:
    parts = urlsplit(url)
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": credentials.key_name,
        "iss": "cdp",
        "nbf": issued,
        "exp": issued + 120,
        "uri": f"{method.upper()} {parts.netloc}{parts.path}",
    }
    headers = {"kid": credentials.key_name, "nonce": secrets.token_hex(16), "typ": "JWT"}
    return jwt.encode(claims, credentials.private_key, algorithm="ES256", headers=headers)
