"""Shared by `cts halt` and `cts resume`."""

from __future__ import annotations

import asyncio

import grpc

from common.clock import utc_now
from common.errors import InvalidArgumentError


def set_halt(halted: bool, reason: str, actor: str, direct: bool) -> int:
    from cts.settings import settings_or_exit

    settings = settings_or_exit()

    async def via_rpc() -> str:
        from common.channels import create_channel
        from crypto_trading.v1 import orchestrator_pb2, orchestrator_pb2_grpc

        channel = create_channel(settings.trade_orchestrator_addr, settings)
        try:
            stub = orchestrator_pb2_grpc.TradeOrchestratorServiceStub(channel)
            response = await stub.SetTradingHalt(
                orchestrator_pb2.SetTradingHaltRequest(halted=halted, reason=reason, actor=actor), timeout=10
            )
            return f"halted={response.halt.halted} reason={response.halt.reason!r}"
        finally:
            await channel.close(None)

    async def in_database() -> str:
        from common.database import create_engine
        from orchestrator_svc.halt import new_halt
        from orchestrator_svc.repository import OrchestratorRepository

        engine = create_engine(settings.database_url)
        try:
            halt = new_halt(halted, reason, actor, utc_now())
            await OrchestratorRepository(engine).set_halt(halt)
            return f"halted={halt.halted} reason={halt.reason!r}"
        finally:
            await engine.dispose()

    try:
        summary = asyncio.run(in_database() if direct else via_rpc())
    except InvalidArgumentError as exc:
        print(f"cts: {exc}")
        return 2
    except grpc.aio.AioRpcError as exc:
        print(
            f"cts: the orchestrator at {settings.trade_orchestrator_addr} answered {exc.code().name}: "
            f"{exc.details()} (use --direct to write the flag in the database)"
        )
        return 1
    print(("trading halted: " if halted else "trading resumed: ") + summary)
    return 0
