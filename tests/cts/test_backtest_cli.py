"""`cts backtest` on the command line: an unknown symbol is one line and a non-zero exit; a run prints
percentages and money, lists every file of the report and warns when the period is in the model's training data."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.database import create_engine
from common.migrate import upgrade
from cts.main import main
from tests.support.seed import seed_bundled

# XRP-USD rows 11,100 - 12,000 of the shared candles: mid-2018, inside the model's training period.
END_INDEX = 12_000
ROWS = 900
WARM_UP = 600  # decisions start after this many candles (the features need 200)


@pytest.fixture
def candle_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> datetime:
    """A migrated SQLite database with XRP-USD candles as DATABASE_URL; returns the first decision time."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'candles.db'}"

    async def seed() -> int:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            candles = await seed_bundled(engine, "XRP-USD", ROWS, end_index=END_INDEX)
            return int(candles["timestamp"].iloc[WARM_UP])
        finally:
            await engine.dispose()

    start = asyncio.run(seed())
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return datetime.fromtimestamp(start, UTC)


def test_unknown_symbol_is_one_line_and_a_failure(candle_db: datetime, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--symbols", "FOO-USD"])
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert err.strip().splitlines() == [err.strip()]
    assert "unknown symbol FOO-USD" in err
    assert "XRP-USD" in err  # the symbols that do have candles
    assert "ingest" not in err


def test_known_symbol_in_lower_case_is_accepted(candle_db: datetime, tmp_path: Path) -> None:
    start = candle_db.isoformat()
    assert main(["backtest", "--symbols", "xrp-usd", "--start", start, "--output", str(tmp_path / "r")]) == 0


def test_report_in_words_with_every_file(
    candle_db: datetime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "report"
    code = main(["backtest", "--start", candle_db.isoformat(), "--output", str(out_dir)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "total_return" not in out
    assert "{" not in out
    assert re.search(r"^\s+total return\s+-?\d+\.\d\d %$", out, re.MULTILINE), out
    assert re.search(r"^\s+max drawdown\s+-?\d+\.\d\d %$", out, re.MULTILINE), out
    assert re.search(r"^\s+fees\s+-?\$\d[\d,]*\.\d\d$", out, re.MULTILINE), out
    assert re.search(r"^\s+final equity\s+-?\$[\d,]+\.\d\d from \$10,000\.00$", out, re.MULTILINE), out
    for name in ("equity.png", "trades.csv", "summary.md", "summary.json"):
        path = out_dir / name
        assert path.is_file()
        assert str(path) in out
    assert re.search(r"^\s+recommendations\s+[\d,]+, of which \d+\.\d\d % refused", out, re.MULTILINE), out
    assert re.search(r"^\s+average holding time\s+(\d+\.\d h|-)$", out, re.MULTILINE), out
    # 2017-2019 candles are out of sample for the bundled model (trained on 2024): no training-period warning
    # (tests/cts/test_backtest_report.py tests the warning itself).
    assert "overlaps the model's" not in out
