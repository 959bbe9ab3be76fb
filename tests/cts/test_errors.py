"""Every `cts` command turns a configuration, database or file problem into one line naming the cause (never a
secret) and a non-zero exit; --debug shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cts.errors import describe_error

# Nothing listens on port 1; the password must never be printed.
UNREACHABLE_MYSQL = "mysql+asyncmy://trader:s3cret-Pa55@127.0.0.1:1/crypto_prices"


def _cts(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", **env}
    return subprocess.run(
        [sys.executable, "-m", "cts", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("command", [["status", "--no-health"], ["migrate"], ["up", "--no-ui", "--keep"]])
def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path, command: list[str]) -> None:
    result = _cts(tmp_path, *command, DATABASE_URL=UNREACHABLE_MYSQL)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cts {command[0]}: database error: (2003)"), lines[0]
    assert "127.0.0.1" in lines[0]
    assert "s3cret-Pa55" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = _cts(tmp_path, "status", "--no-health", "--debug", DATABASE_URL=UNREACHABLE_MYSQL)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_a_missing_candle_directory_is_one_line(tmp_path: Path) -> None:
    result = _cts(tmp_path, "ingest", "--directory", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "nowhere holds no <SYMBOL>_1h.csv.gz candle files" in result.stderr


def test_a_bad_setting_names_the_variable_never_the_value(tmp_path: Path) -> None:
    result = _cts(tmp_path, "status", "--no-health", DATABASE_URL="postgresql://u:hunter2@h/db")
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_passwords_in_urls_are_masked_in_any_message() -> None:
    message = describe_error(RuntimeError("cannot reach mysql+asyncmy://trader:pw-123@db:3306/crypto_prices"))
    assert "pw-123" not in message
    assert "trader:***@db" in message
