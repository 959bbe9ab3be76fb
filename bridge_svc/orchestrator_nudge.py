"""Best-effort nudge of the orchestrator after recommendations were created.

:meth:`OrchestratorNudge.nudge` never blocks and never fails: it queues the ids and wakes one background sender,
which calls ``Orchestrate(recommendation_ids)`` on a persistent channel with a short deadline (replaced after a
failure). Ids queued while a
call is in flight go out together in the next call. A failure is logged (WARNING once, then DEBUG until a call
succeeds again) and otherwise ignored: the orchestrator's own loop is the safety net."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import grpc

from common.channels import create_channel
from common.config import Settings
from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc

log = logging.getLogger(__name__)

NUDGE_TIMEOUT_SECONDS: Final = 5.0


class OrchestratorNudge:
    def __init__(self, settings: Settings, *, timeout: float = NUDGE_TIMEOUT_SECONDS) -> None:
        self._settings = settings
        self._address = settings.trade_orchestrator_addr
        self._timeout = timeout
        self._max_ids = settings.orchestrator_max_ids
        self._queued: list[int] = []
        self._wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._stub: orchestrator_pb2_grpc.TradeOrchestratorServiceAsyncStub | None = None
        self._failing = False

    def nudge(self, recommendation_ids: list[int]) -> None:
        """Queue ``recommendation_ids`` for the next Orchestrate call (returns at once)."""
        if recommendation_ids:
            self._queued.extend(recommendation_ids)
            self._wake.set()

    async def run(self) -> None:
        """The sender (a background job of the service): one Orchestrate call at a time, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            ids, self._queued = self._queued, []
            # The orchestrator refuses more than ORCHESTRATOR_MAX_IDS ids per call; the ids are informational, so the
            # newest ones are enough.
            await self._send(ids[-self._max_ids :])

    async def _send(self, ids: list[int]) -> None:
        if self._stub is None:
            self._channel = create_channel(self._address, self._settings)
            self._stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(self._channel)
        assert self._stub is not None
        try:
            await self._stub.Orchestrate(
                orchestrator_pb2.OrchestrateRequest(recommendation_ids=ids), timeout=self._timeout
            )
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            await self._failed(f"{exc.code().name}", len(ids))
        except Exception as exc:
            await self._failed(type(exc).__name__, len(ids))
        else:
            if self._failing:
                log.info("orchestrator nudge works again (%s)", self._address)
            self._failing = False
            log.debug("nudged the orchestrator with %d recommendation(s)", len(ids))

    async def _failed(self, problem: str, count: int) -> None:
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(
            level,
            "could not nudge the orchestrator at %s (%s) about %d recommendation(s); its loop will pick them up",
            self._address,
            problem,
            count,
        )
        self._failing = True
        # A fresh channel next time: it connects at once instead of waiting out the reconnect backoff of this one
        # (up to minutes), so nudges resume as soon as the orchestrator is back.
        await self.close()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
            self._stub = None
