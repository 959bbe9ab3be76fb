"""Which eligible signals may open or close a position (pure; shared with `cts backtest`).

- BUY: only when the symbol has no open position (nor a BUY about to open one: ``position_open``) and fewer than
  MAX_OPEN_POSITIONS positions are open or about to open (``max_positions``).
- SELL: only when a position in the symbol is open (``no_position``), and not while a SELL for it is already
  pending (``exit_pending``); it then closes the whole position: amount_crypto = the held quantity, amount_usd =
  its value at the signal's price.
Eligible signals of one moment are admitted highest confidence first (then symbol, then id): when positions are
scarce, the strongest signals get them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from bridge_svc.signals import TradingSignal
from common.lifecycle import OrderSide

NO_POSITION: Final = "no_position"
POSITION_OPEN: Final = "position_open"
MAX_POSITIONS: Final = "max_positions"
EXIT_PENDING: Final = "exit_pending"


@dataclass
class PositionBook:
    """The positions as the bridge sees them: open ones (symbol -> quantity held) and pending recommendations.

    The book may cover only the symbols of the signals at hand (the bridge reads no more): ``elsewhere`` counts the
    other symbols that hold a position or have a PENDING BUY, so the MAX_OPEN_POSITIONS rule still sees them all."""

    held: dict[str, Decimal] = field(default_factory=dict)
    opening: set[str] = field(default_factory=set)  # symbols with a PENDING BUY
    closing: set[str] = field(default_factory=set)  # symbols with a PENDING SELL
    elsewhere: int = 0  # symbols outside the book with an open position or a PENDING BUY

    def refusal(self, side: str, symbol: str, max_open: int) -> str | None:
        """Why a ``side`` signal for ``symbol`` may not become a recommendation now (None: it may)."""
        if side == OrderSide.BUY:
            if symbol in self.held or symbol in self.opening:
                return POSITION_OPEN
            if len(self.held.keys() | self.opening) + self.elsewhere >= max_open:
                return MAX_POSITIONS
            return None
        if symbol not in self.held:
            return NO_POSITION
        if symbol in self.closing:
            return EXIT_PENDING
        return None

    def written(self, side: str, symbol: str) -> None:
        """A recommendation was written: later signals of the same batch see it."""
        (self.opening if side == OrderSide.BUY else self.closing).add(symbol)


_NEVER = datetime.min.replace(tzinfo=UTC)


def admission_order(signal: TradingSignal) -> tuple[datetime, Decimal, str, int]:
    """Sort key of eligible signals: oldest first, then the highest confidence, then symbol and id."""
    return (signal.created_at or _NEVER, -signal.confidence, signal.symbol, signal.id)
