"""Reading OrchestrateResponse in tests: every outcome is in ``outcomes`` once, with its status."""

from __future__ import annotations

from crypto_trading.v1 import common_pb2, orchestrator_pb2

EXECUTED = common_pb2.EXECUTION_STATUS_EXECUTED
FAILED = common_pb2.EXECUTION_STATUS_FAILED
CANCELLED = common_pb2.EXECUTION_STATUS_CANCELLED
PENDING = common_pb2.EXECUTION_STATUS_PENDING


def with_status(
    response: orchestrator_pb2.OrchestrateResponse, status: common_pb2.ExecutionStatus.ValueType
) -> list[orchestrator_pb2.RecommendationOutcome]:
    return [o for o in response.outcomes if o.status == status]


def executed(response: orchestrator_pb2.OrchestrateResponse) -> list[orchestrator_pb2.RecommendationOutcome]:
    return with_status(response, EXECUTED)


def failed(response: orchestrator_pb2.OrchestrateResponse) -> list[orchestrator_pb2.RecommendationOutcome]:
    return with_status(response, FAILED)


def cancelled(response: orchestrator_pb2.OrchestrateResponse) -> list[orchestrator_pb2.RecommendationOutcome]:
    return with_status(response, CANCELLED)


def retry_later(response: orchestrator_pb2.OrchestrateResponse) -> list[orchestrator_pb2.RecommendationOutcome]:
    return with_status(response, PENDING)
