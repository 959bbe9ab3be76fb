"""The trading halt (kill switch): stored in the database so every replica obeys it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.errors import InvalidArgumentError

MAX_REASON = 500
MAX_ACTOR = 100


@dataclass(frozen=True)
class TradingHalt:
    halted: bool
    reason: str
    actor: str
    updated_at: datetime | None


def new_halt(halted: bool, reason: str, actor: str, now: datetime) -> TradingHalt:
    reason, actor = reason.strip(), actor.strip()
    if halted and not reason:
        raise InvalidArgumentError("a reason is required to halt trading")
    if len(reason) > MAX_REASON:
        raise InvalidArgumentError(f"reason is longer than {MAX_REASON} characters")
    if len(actor) > MAX_ACTOR:
        raise InvalidArgumentError(f"actor is longer than {MAX_ACTOR} characters")
    if any(ord(ch) < 32 for ch in reason + actor):
        raise InvalidArgumentError("reason and actor must not contain control characters")
    return TradingHalt(halted, reason, actor or "unknown", now)
