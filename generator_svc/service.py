"""Thin servicer of the signal generator: validates and converts messages, runs SignalGenerator.generate."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from common.clock import Clock
from common.errors import InvalidArgumentError
from common.lifecycle import decimal_string, from_timestamp, signal_type_to_proto, to_timestamp
from crypto_trading.v1 import generator_pb2, generator_pb2_grpc
from generator_svc.generation import GenerationResult, SignalGenerator
from generator_svc.repository import SignalRow

SYMBOL = re.compile(r"^[A-Z0-9]{1,20}-[A-Z]{2,10}$")
EARLIEST = datetime(2009, 1, 3, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(minutes=5)


def parse_symbols(raw: list[str], limit: int) -> list[str]:
    if len(raw) > limit:
        raise InvalidArgumentError(f"too many symbols: {len(raw)} > {limit}")
    symbols = []
    for item in raw:
        symbol = item.strip().upper()
        if not SYMBOL.match(symbol):
            shown = item[:40] + ("..." if len(item) > 40 else "")
            raise InvalidArgumentError(f"malformed symbol {shown!r}: expected a product id like BTC-USD")
        symbols.append(symbol)
    return list(dict.fromkeys(symbols))


def parse_as_of(request: generator_pb2.GenerateRequest, clock: Clock) -> datetime | None:
    if not request.HasField("as_of"):
        return None
    stamp = request.as_of
    if not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgumentError("as_of.nanos must be within 0..999999999")
    if not EARLIEST.timestamp() <= stamp.seconds <= (clock() + FUTURE_TOLERANCE).timestamp():
        raise InvalidArgumentError("as_of must be between 2009-01-03 and now")
    return from_timestamp(stamp)


def to_message(row: SignalRow, created: bool) -> generator_pb2.Signal:
    return generator_pb2.Signal(
        id=row.id,
        symbol=row.symbol,
        signal_type=signal_type_to_proto(row.signal_type),
        confidence=decimal_string(row.confidence),
        price=decimal_string(row.price),
        model=row.model,
        model_version=row.model_version,
        candle_time=to_timestamp(row.candle_time),
        buy_probability=decimal_string(row.buy_probability),
        sell_probability=decimal_string(row.sell_probability),
        hold_probability=decimal_string(row.hold_probability),
        threshold=decimal_string(row.threshold),
        regime=row.regime,
        data_source=row.data_source,
        is_mock=row.is_mock,
        created=created,
    )


def to_response(result: GenerationResult) -> generator_pb2.GenerateResponse:
    return generator_pb2.GenerateResponse(
        signals=[to_message(row, created) for row, created in result.signals],
        skipped=[generator_pb2.SkippedSymbol(symbol=s, reason=r) for s, r in result.skipped.items()],
    )


class SignalGeneratorServicer(generator_pb2_grpc.SignalGeneratorServiceServicer):
    def __init__(
        self,
        generator: SignalGenerator,
        clock: Clock,
        max_symbols: int,
        after: Callable[[GenerationResult], None],
        *,
        default_as_of: Callable[[], datetime | None] | None = None,
    ) -> None:
        self.generator = generator
        self.default_as_of = default_as_of  # replay mode: the replay's market time when the request has no as_of
        self.clock = clock
        self.max_symbols = max_symbols
        self.after = after

    async def Generate(self, request: generator_pb2.GenerateRequest, context: Any) -> generator_pb2.GenerateResponse:
        symbols = parse_symbols(list(request.symbols), self.max_symbols)
        as_of = parse_as_of(request, self.clock)
        if as_of is None and self.default_as_of is not None:
            as_of = self.default_as_of()
        result = await self.generator.generate(symbols or None, as_of)
        self.after(result)
        return to_response(result)
