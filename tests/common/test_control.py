"""system_control's typed keys and the values decoded in one place."""

from __future__ import annotations

from datetime import UTC, datetime

from common.control import ControlKey, decode_halt, decode_replay_clock, encode_halt, read_control, write_control
from common.database import create_engine


def test_halt_round_trip_and_hand_written_values() -> None:
    assert decode_halt(encode_halt(True, "maintenance")) == decode_halt('{"halted": true, "reason": "maintenance"}')
    flag = decode_halt(encode_halt(True, "maintenance"))
    assert (flag.halted, flag.reason) == (True, "maintenance")
    assert decode_halt(None).halted is False
    assert decode_halt("yes").halted is True
    assert decode_halt("no").halted is False
    assert decode_halt("[]").halted is False


def test_replay_clock() -> None:
    assert decode_replay_clock("2019-07-01T01:00:00+00:00") == datetime(2019, 7, 1, 1, tzinfo=UTC)
    assert decode_replay_clock("2019-07-01T01:00:00") == datetime(2019, 7, 1, 1, tzinfo=UTC)
    assert decode_replay_clock("garbage") is None
    assert decode_replay_clock(None) is None


async def test_write_then_read(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            assert await read_control(conn, ControlKey.REPLAY_PROGRESS) is None
            await write_control(conn, ControlKey.REPLAY_PROGRESS, "1/10", "test")
            await write_control(conn, ControlKey.REPLAY_PROGRESS, "2/10", "test")
            assert await read_control(conn, ControlKey.REPLAY_PROGRESS) == "2/10"
    finally:
        await engine.dispose()
