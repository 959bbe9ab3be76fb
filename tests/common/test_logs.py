from __future__ import annotations

import io
import json
import logging

import pytest

from common.logs import JsonFormatter, RedactingFilter, redact, register_secret

PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkRZfakeKEYmaterial0123456789abcdef\n-----END EC PRIVATE KEY-----\n"
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJvcmdhbml6YXRpb25zIn0.c2lnbmF0dXJlLWJ5dGVz"


def _logger(fmt: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(fmt)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test-redaction-{id(stream)}")
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def test_registered_secrets_pem_blocks_and_jwts_are_redacted() -> None:
    register_secret("organizations/org-1/apiKeys/key-secret-name")
    text = redact(f"key=organizations/org-1/apiKeys/key-secret-name pem={PEM} auth=Bearer {JWT} jwt={JWT}")
    assert "key-secret-name" not in text
    assert "MHcCAQEEIBkRZfakeKEYmaterial" not in text
    assert JWT not in text
    assert "[REDACTED]" in text


def test_exceptions_and_extra_fields_are_redacted_in_json_logs() -> None:
    logger, stream = _logger(JsonFormatter())
    try:
        raise RuntimeError(f"signing failed with {PEM}")
    except RuntimeError:
        logger.exception("order failed", extra={"authorization": f"Bearer {JWT}", "recommendation_id": 7})
    record = json.loads(stream.getvalue())
    assert record["message"].startswith("order failed")
    assert record["recommendation_id"] == 7
    dumped = stream.getvalue()
    assert "MHcCAQEEIBkRZfakeKEYmaterial" not in dumped
    assert JWT not in dumped


@pytest.mark.parametrize("level", [logging.DEBUG, logging.ERROR])
def test_format_arguments_are_redacted(level: int) -> None:
    logger, stream = _logger(logging.Formatter("%(message)s"))
    logger.log(level, "token %s", JWT)
    assert JWT not in stream.getvalue()
