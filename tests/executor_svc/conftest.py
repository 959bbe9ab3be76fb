"""Shared fixtures of the executor tests: a running fake Coinbase and an engine with a BTC-USD price."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_coinbase import FakeCoinbase


@pytest.fixture
def fake() -> Iterator[FakeCoinbase]:
    server = FakeCoinbase().start()
    yield server
    server.stop()
