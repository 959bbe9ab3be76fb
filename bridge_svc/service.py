"""Thin servicer of the bridge service: validates BridgeRequest and converts the outcome to BridgeResponse."""

from __future__ import annotations

from typing import Any, Final

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bridge_svc.bridging import BridgeOutcome, SignalBridge
from bridge_svc.recommendations import Recommendation
from common.errors import InvalidArgumentError
from crypto_trading.v1 import bridge_pb2, bridge_pb2_grpc, common_pb2

# trading_signals.id is a signed 32-bit INT.
MAX_SIGNAL_ID: Final = 2**31 - 1

_SIGNAL_TYPES: Final = {"BUY": common_pb2.SIGNAL_TYPE_BUY, "SELL": common_pb2.SIGNAL_TYPE_SELL}
_EXECUTION_STATUSES: Final = {
    "PENDING": common_pb2.EXECUTION_STATUS_PENDING,
    "EXECUTED": common_pb2.EXECUTION_STATUS_EXECUTED,
    "FAILED": common_pb2.EXECUTION_STATUS_FAILED,
    "CANCELLED": common_pb2.EXECUTION_STATUS_CANCELLED,
}


def validate_signal_ids(signal_ids: list[int], max_ids: int) -> list[int]:
    """The ids as given, or InvalidArgumentError (each must be in 1 .. 2^31-1, at most ``max_ids`` of them)."""
    if len(signal_ids) > max_ids:
        raise InvalidArgumentError(f"signal_ids: at most {max_ids} ids per call, got {len(signal_ids)}")
    bad = [i for i in signal_ids if not 0 < i <= MAX_SIGNAL_ID]
    if bad:
        raise InvalidArgumentError(f"signal_ids: each id must be between 1 and {MAX_SIGNAL_ID}; got {bad[0]}")
    return signal_ids


def recommendation_message(recommendation: Recommendation) -> bridge_pb2.Recommendation:
    proposal = recommendation.proposal
    levels = proposal.levels
    created_at = Timestamp()
    created_at.FromDatetime(proposal.created_at)
    return bridge_pb2.Recommendation(
        id=recommendation.id,
        signal_id=proposal.signal_id,
        symbol=proposal.symbol,
        signal_type=_SIGNAL_TYPES[proposal.signal_type],
        amount_usd=str(levels.amount_usd),
        confidence=str(proposal.confidence),
        entry_price=str(levels.entry_price),
        stop_loss=str(levels.stop_loss),
        take_profit=str(levels.take_profit),
        position_size_percent=str(levels.position_size_percent),
        amount_crypto=str(levels.amount_crypto),
        reasoning=proposal.reasoning,
        execution_status=_EXECUTION_STATUSES[recommendation.execution_status],
        is_mock=proposal.is_mock,
        created_at=created_at,
    )


def bridge_response(outcome: BridgeOutcome) -> bridge_pb2.BridgeResponse:
    return bridge_pb2.BridgeResponse(
        recommendations=[recommendation_message(r) for r in outcome.created],
        skipped=[bridge_pb2.SkipCount(reason=reason, count=count) for reason, count in sorted(outcome.skipped.items())],
        skipped_signals=[bridge_pb2.SkippedSignal(signal_id=i, reason=reason) for i, reason in outcome.skipped_signals],
    )


class SignalBridgeServiceer(bridge_pb2_grpc.SignalBridgeServiceServicer):
    def __init__(self, bridge: SignalBridge, max_signal_ids: int) -> None:
        self._bridge = bridge
        self._max_signal_ids = max_signal_ids

    async def Bridge(
        self, request: bridge_pb2.BridgeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bridge_pb2.BridgeResponse:
        signal_ids = validate_signal_ids(list(request.signal_ids), self._max_signal_ids)
        return bridge_response(await self._bridge.bridge(signal_ids))
