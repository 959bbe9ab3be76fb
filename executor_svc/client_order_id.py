"""The client_order_id of a recommendation: a UUIDv5 of its id, so every retry and every restart sends the same
id and Coinbase answers a repeat with the order it already has."""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f1c7a52-4d3e-5b8a-9c1d-2e7f0a9b3c4d")


def client_order_id(recommendation_id: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"trade_recommendations/{recommendation_id}"))
