"""Thin servicer of the trade orchestrator: Orchestrate (one cycle now), SetTradingHalt and GetTradingHalt."""

from __future__ import annotations

from typing import Any

from common.clock import Clock
from common.errors import InvalidArgumentError
from common.lifecycle import status_to_proto, to_timestamp
from common.tables import MAX_ROW_ID
from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from orchestrator_svc.cycle import CycleResult, Orchestrator
from orchestrator_svc.halt import TradingHalt, new_halt


def to_response(result: CycleResult) -> orchestrator_pb2.OrchestrateResponse:
    return orchestrator_pb2.OrchestrateResponse(
        outcomes=[
            orchestrator_pb2.RecommendationOutcome(
                recommendation_id=o.recommendation_id,
                status=status_to_proto(o.status),
                reason=o.reason,
                exchange_order_id=o.exchange_order_id,
            )
            for o in result.outcomes
        ],
        remaining=result.remaining,
        executor_unreachable=result.executor_unreachable,
        executor_error=result.executor_error,
        halted=result.halted,
        window_capacity_left=result.capacity_left,
    )


def halt_message(halt: TradingHalt) -> orchestrator_pb2.TradingHalt:
    message = orchestrator_pb2.TradingHalt(halted=halt.halted, reason=halt.reason, actor=halt.actor)
    if halt.updated_at is not None:
        message.updated_at.CopyFrom(to_timestamp(halt.updated_at))
    return message


class TradeOrchestratorServicer(orchestrator_pb2_grpc.TradeOrchestratorServiceServicer):
    def __init__(self, orchestrator: Orchestrator, clock: Clock, cap: int, max_ids: int) -> None:
        self.orchestrator = orchestrator
        self.clock = clock
        self.cap = cap
        self.max_ids = max_ids

    async def Orchestrate(
        self, request: orchestrator_pb2.OrchestrateRequest, context: Any
    ) -> orchestrator_pb2.OrchestrateResponse:
        if len(request.recommendation_ids) > self.max_ids:
            raise InvalidArgumentError(f"at most {self.max_ids} recommendation_ids per call")
        if any(not 0 < i <= MAX_ROW_ID for i in request.recommendation_ids):
            raise InvalidArgumentError(f"recommendation_ids must be between 1 and {MAX_ROW_ID}")
        if not 0 <= request.max_trades <= self.cap:
            raise InvalidArgumentError(f"max_trades must be between 0 (the configured cap) and {self.cap}")
        return to_response(await self.orchestrator.run_cycle(request.max_trades))

    async def SetTradingHalt(
        self, request: orchestrator_pb2.SetTradingHaltRequest, context: Any
    ) -> orchestrator_pb2.SetTradingHaltResponse:
        halt = new_halt(request.halted, request.reason, request.actor, self.clock())
        await self.orchestrator.repository.set_halt(halt)
        return orchestrator_pb2.SetTradingHaltResponse(halt=halt_message(halt))

    async def GetTradingHalt(
        self, request: orchestrator_pb2.GetTradingHaltRequest, context: Any
    ) -> orchestrator_pb2.GetTradingHaltResponse:
        return orchestrator_pb2.GetTradingHaltResponse(halt=halt_message(await self.orchestrator.repository.get_halt()))
