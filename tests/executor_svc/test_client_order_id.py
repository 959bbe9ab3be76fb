"""client_order_id is scoped to the installation: two fresh databases never send the same id for recommendation 1
(a second environment on the same Coinbase key gets its own order, not the other's: no phantom fill), one database
sends the same ids across restarts and migrations, and an execution recorded earlier keeps its stored id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from common.database import create_engine
from common.migrate import upgrade
from common.server import running_service
from common.tables import trade_executions
from executor_svc.client_order_id import NAMESPACE, client_order_id
from executor_svc.server import DEFINITION
from tests.conftest import make_settings
from tests.executor_svc.test_service import EXECUTED, installation_id, process
from tests.support.fake_coinbase import FakeCoinbase, live_settings
from tests.support.seed import seed_price, seed_recommendation


@pytest.fixture
def fake() -> Iterator[FakeCoinbase]:
    server = FakeCoinbase().start()
    yield server
    server.stop()


async def _fresh_database(path: Path) -> tuple[str, Any]:
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    await upgrade(engine)
    await seed_price(engine, "BTC-USD", "9000")
    assert await seed_recommendation(engine) == 1
    return url, engine


def test_the_id_depends_on_the_installation_and_the_recommendation() -> None:
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    assert client_order_id(one, 1) == client_order_id(one, 1)
    assert len({client_order_id(one, 1), client_order_id(two, 1), client_order_id(one, 2)}) == 3
    assert uuid.UUID(client_order_id(one, 1)).version == 5


async def test_two_fresh_databases_send_different_ids_for_recommendation_1(tmp_path: Path, fake: FakeCoinbase) -> None:
    (url_a, engine_a), (url_b, engine_b) = [await _fresh_database(tmp_path / f"{n}.db") for n in "ab"]
    try:
        installation_a, installation_b = await installation_id(engine_a), await installation_id(engine_b)
        assert installation_a != installation_b  # created by the migration, once per database
        results = []
        for url in (url_a, url_b):  # two environments on the same Coinbase key
            async with running_service(DEFINITION, live_settings(url, fake)) as service:
                results.append(await process(service.port, 1))
        assert [r.status for r in results] == [EXECUTED, EXECUTED]
        assert results[0].client_order_id == client_order_id(installation_a, 1)
        assert results[1].client_order_id == client_order_id(installation_b, 1)
        assert results[0].client_order_id != results[1].client_order_id
        # Coinbase placed two orders: the second environment did not get the first one's order back.
        assert fake.distinct_orders() == 2
        assert results[0].exchange_order_id != results[1].exchange_order_id
    finally:
        await engine_a.dispose()
        await engine_b.dispose()


async def test_one_database_keeps_its_ids_across_restarts_and_migrations(tmp_path: Path) -> None:
    url, engine = await _fresh_database(tmp_path / "a.db")
    try:
        installation = await installation_id(engine)
        settings = make_settings(url, market_data_source="database")
        async with running_service(DEFINITION, settings) as service:
            first = await process(service.port, 1)
        await upgrade(engine)  # `cts migrate` again: nothing changes
        assert await installation_id(engine) == installation
        second_rec = await seed_recommendation(engine, amount_usd=20)
        async with running_service(DEFINITION, settings) as service:  # a restart
            again = await process(service.port, 1)
            second = await process(service.port, second_rec)
        assert first.client_order_id == again.client_order_id == client_order_id(installation, 1)
        assert again.replayed
        assert second.client_order_id == client_order_id(installation, second_rec)
    finally:
        await engine.dispose()


async def test_an_execution_recorded_earlier_keeps_its_stored_id(database_url: str, fake: FakeCoinbase) -> None:
    """A PENDING live execution written by the previous version (id = UUIDv5 of the recommendation alone) is
    resolved with the id it stored, so Coinbase answers with the order it may already have."""
    engine = create_engine(database_url)
    try:
        await seed_price(engine, "BTC-USD", "9000")
        rec = await seed_recommendation(engine)
        legacy = str(uuid.uuid5(NAMESPACE, f"trade_recommendations/{rec}"))
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            await conn.execute(
                insert(trade_executions).values(
                    recommendation_id=rec,
                    client_order_id=legacy,
                    mode="LIVE",
                    status="PENDING",
                    symbol="BTC-USD",
                    side="BUY",
                    quote_size=100,
                    created_at=now,
                    updated_at=now,
                )
            )
        async with running_service(DEFINITION, live_settings(database_url, fake)) as service:
            result = await process(service.port, rec)
        assert result.status == EXECUTED
        assert result.client_order_id == legacy
        assert list(fake.by_client_id) == [legacy]
        assert legacy != client_order_id(await installation_id(engine), rec)
    finally:
        await engine.dispose()
