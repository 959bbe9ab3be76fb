"""Thin servicer of the bridge service: validates BridgeRequest and converts the outcome to BridgeResponse."""

from __future__ import annotations

from typing import Any

import grpc

from bridge_svc.bridging import BridgeOutcome, SignalBridge
from bridge_svc.recommendations import Recommendation
from common.errors import InvalidArgumentError
from common.lifecycle import decimal_string, signal_type_to_proto, status_to_proto, to_timestamp
from common.tables import MAX_ROW_ID
from crypto_trading.v1 import bridge_pb2, bridge_pb2_grpc


def validate_signal_ids(signal_ids: list[int], max_ids: int) -> list[int]:
    """The ids as given, or InvalidArgumentError (each must be in 1 .. 2^31-1, at most ``max_ids`` of them)."""
    if len(signal_ids) > max_ids:
        raise InvalidArgumentError(f"signal_ids: at most {max_ids} ids per call, got {len(signal_ids)}")
    bad = [i for i in signal_ids if not 0 < i <= MAX_ROW_ID]
    if bad:
        raise InvalidArgumentError(f"signal_ids: each id must be between 1 and {MAX_ROW_ID}; got {bad[0]}")
    return signal_ids


def recommendation_message(recommendation: Recommendation) -> bridge_pb2.Recommendation:
    proposal = recommendation.proposal
    levels = proposal.levels
    return bridge_pb2.Recommendation(
        id=recommendation.id,
        signal_id=proposal.signal_id,
        symbol=proposal.symbol,
        signal_type=signal_type_to_proto(proposal.signal_type),
        amount_usd=decimal_string(levels.amount_usd),
        confidence=decimal_string(proposal.confidence),
        entry_price=decimal_string(levels.entry_price),
        stop_loss=decimal_string(levels.stop_loss),
        take_profit=decimal_string(levels.take_profit),
        position_size_percent=decimal_string(levels.position_size_percent),
        amount_crypto=decimal_string(levels.amount_crypto),
        reasoning=proposal.reasoning,
        execution_status=status_to_proto(recommendation.execution_status),
        is_mock=proposal.is_mock,
        created_at=to_timestamp(proposal.created_at),
    )


def bridge_response(outcome: BridgeOutcome) -> bridge_pb2.BridgeResponse:
    return bridge_pb2.BridgeResponse(
        recommendations=[recommendation_message(r) for r in outcome.created],
        skipped=[bridge_pb2.SkipCount(reason=reason, count=count) for reason, count in sorted(outcome.skipped.items())],
        skipped_signals=[bridge_pb2.SkippedSignal(signal_id=i, reason=reason) for i, reason in outcome.skipped_signals],
    )


class SignalBridgeServicer(bridge_pb2_grpc.SignalBridgeServiceServicer):
    def __init__(self, bridge: SignalBridge, max_signal_ids: int) -> None:
        self._bridge = bridge
        self._max_signal_ids = max_signal_ids

    async def Bridge(
        self, request: bridge_pb2.BridgeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bridge_pb2.BridgeResponse:
        signal_ids = validate_signal_ids(list(request.signal_ids), self._max_signal_ids)
        return bridge_response(await self._bridge.bridge(signal_ids))
