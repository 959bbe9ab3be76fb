"""system_control: the small key/value table every replica reads. The keys are typed (no free strings), and the
values with a structure are encoded and decoded here, once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from common.clock import as_utc, utc_now
from common.sql import insert_ignore
from common.tables import system_control


class ControlKey(StrEnum):
    TRADING_HALT = "trading_halt"  # JSON {"halted": bool, "reason": str}: every orchestrator replica obeys it
    DISPATCH_LOCK = "dispatch_lock"  # the row the orchestrators lock to keep the rolling trade cap exact
    REPLAY_CLOCK = "replay_clock"  # replay mode: the market time (ISO) of the last released candle's close
    REPLAY_PROGRESS = "replay_progress"  # replay mode: "released/total" candles
    INSTALLATION_ID = "installation_id"  # created once with the database; client_order_ids derive from it
    RECONCILIATION = "reconciliation"  # JSON: the live executor's last comparison of the exchange's orders


@dataclass(frozen=True)
class HaltFlag:
    halted: bool
    reason: str


def encode_halt(halted: bool, reason: str) -> str:
    return json.dumps({"halted": halted, "reason": reason})


def decode_halt(value: str | None) -> HaltFlag:
    """The stored halt; also accepts a bare "1"/"true"/"yes" written by hand."""
    if not value:
        return HaltFlag(False, "")
    try:
        data = json.loads(value)
    except ValueError:
        return HaltFlag(value.strip().lower() in ("1", "true", "yes"), "")
    if not isinstance(data, dict):
        return HaltFlag(bool(data), "")
    return HaltFlag(bool(data.get("halted", False)), str(data.get("reason", "")))


def decode_replay_clock(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


async def read_control(conn: AsyncConnection, key: ControlKey) -> str | None:
    value = await conn.execute(select(system_control.c.value).where(system_control.c.key == key.value))
    return value.scalar_one_or_none()


async def write_control(
    conn: AsyncConnection, key: ControlKey, value: str, updated_by: str, now: datetime | None = None
) -> None:
    """Set ``key`` (insert it the first time)."""
    now = now or utc_now()
    result = await conn.execute(
        update(system_control)
        .where(system_control.c.key == key.value)
        .values(value=value, updated_by=updated_by, updated_at=now)
    )
    if result.rowcount == 0:
        await conn.execute(
            insert_ignore(conn, system_control),
            {"key": key.value, "value": value, "updated_by": updated_by, "updated_at": now},
        )
