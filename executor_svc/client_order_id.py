"""The client_order_id of a recommendation: a UUIDv5 of this installation's id and the recommendation id, so every
retry and every restart sends the same id (Coinbase answers a repeat with the order it already has), while another
installation (a new or re-created database, a second environment on the same Coinbase key) never sends it.

The installation id is created once with the database (migration 0003, system_control 'installation_id'), so a
restored backup keeps it. An execution already recorded keeps the id stored in trade_executions."""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f1c7a52-4d3e-5b8a-9c1d-2e7f0a9b3c4d")


def client_order_id(installation_id: str, recommendation_id: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{installation_id}/trade_recommendations/{recommendation_id}"))
