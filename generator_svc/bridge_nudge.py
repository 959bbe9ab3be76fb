"""Best-effort nudge of the bridge after BUY/SELL signals were committed: ``Bridge(signal_ids)`` on a persistent
channel with a short deadline, from a background sender, so Generate never waits for it and never fails because
of it. The bridge's own 30-second loop is the safety net."""

from __future__ import annotations

import asyncio
import logging

import grpc

from common.channels import create_channel
from common.config import Settings
from crypto_trading.v1 import bridge_pb2, bridge_pb2_grpc

log = logging.getLogger(__name__)
NUDGE_TIMEOUT_SECONDS = 5.0


class BridgeNudge:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._address = settings.signal_bridge_addr
        self._max_ids = settings.bridge_max_signal_ids
        self._queued: list[int] = []
        self._wake = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._failing = False

    def nudge(self, signal_ids: list[int]) -> None:
        if signal_ids:
            self._queued.extend(signal_ids)
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ids, self._queued = self._queued[: self._max_ids], self._queued[self._max_ids :]
            if self._queued:
                self._wake.set()
            await self._send(ids)

    async def _send(self, ids: list[int]) -> None:
        if self._channel is None:
            self._channel = create_channel(self._address, self._settings)
        stub = bridge_pb2_grpc.SignalBridgeServiceStub(self._channel)
        try:
            await stub.Bridge(bridge_pb2.BridgeRequest(signal_ids=ids), timeout=NUDGE_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            log.log(
                logging.DEBUG if self._failing else logging.WARNING,
                "could not nudge the bridge at %s (%s) about %d signal(s); its loop will pick them up",
                self._address,
                exc.code().name,
                len(ids),
            )
            self._failing = True
            await self.close()
        else:
            self._failing = False

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
