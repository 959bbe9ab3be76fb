"""The migrated schema equals the SQLAlchemy metadata, keeps the original DDL on MySQL, and the operators'
inspection queries run unchanged."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select, text

from common.database import create_engine
from common.migrate import current_revision, head_revision, upgrade
from common.tables import metadata, trade_recommendations, trading_signals

ORIGINAL_SIGNAL_COLUMNS = {
    "id": "int",
    "timestamp": "timestamp",
    "symbol": "varchar(50)",
    "price": "decimal(15,8)",
    "signal_type": "enum('BUY','SELL','HOLD')",
    "model": "varchar(100)",
    "confidence": "decimal(6,4)",
    "threshold": "decimal(6,4)",
    "regime": "varchar(50)",
    "model_version": "varchar(100)",
    "features_used": "int",
    "xgboost_confidence": "decimal(6,4)",
    "data_source": "varchar(100)",
    "created_at": "timestamp",
    "is_mock": "tinyint(1)",
    "processed": "tinyint(1)",
    "prediction": "decimal(6,4)",
}
ORIGINAL_RECOMMENDATION_COLUMNS = {
    "id": "int",
    "signal_id": "int",
    "symbol": "varchar(50)",
    "signal_type": "enum('BUY','SELL','HOLD','STRONG_BUY','STRONG_SELL')",
    "amount_usd": "decimal(15,8)",
    "confidence": "decimal(6,4)",
    "reasoning": "text",
    "execution_status": "enum('PENDING','EXECUTED','FAILED','CANCELLED')",
    "entry_price": "decimal(15,8)",
    "stop_loss": "decimal(15,8)",
    "take_profit": "decimal(15,8)",
    "position_size_percent": "decimal(5,2)",
    "amount_crypto": "decimal(20,8)",
    "is_mock": "tinyint(1)",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "executed_at": "timestamp",
}


async def test_migrations_match_metadata(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)  # idempotent: already at head
        assert await current_revision(engine) == head_revision()

        def diff(sync_conn: Any) -> list[Any]:
            context = MigrationContext.configure(sync_conn, opts={"compare_type": False})
            return list(compare_metadata(context, metadata))

        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
        assert differences == []
    finally:
        await engine.dispose()


def _normalise(column_type: str) -> str:
    column_type = column_type.replace(" ", "")
    if column_type.lower().startswith("int"):
        return "int"
    return column_type if column_type.startswith("enum") else column_type.lower()


async def test_original_columns_on_mysql(mysql_database: str) -> None:
    engine = create_engine(mysql_database)
    try:
        async with engine.connect() as conn:
            for table, expected in (
                ("trading_signals", ORIGINAL_SIGNAL_COLUMNS),
                ("trade_recommendations", ORIGINAL_RECOMMENDATION_COLUMNS),
            ):
                rows = await conn.execute(
                    text(
                        "SELECT column_name, column_type, column_default, extra FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() AND table_name = :t"
                    ),
                    {"t": table},
                )
                actual = {r[0]: (_normalise(r[1]), r[2], r[3]) for r in rows}
                for column, column_type in expected.items():
                    assert actual[column][0] == column_type, (table, column, actual[column])
            updated = await conn.execute(
                text(
                    "SELECT extra FROM information_schema.columns WHERE table_schema = DATABASE() "
                    "AND table_name = 'trade_recommendations' AND column_name = 'updated_at'"
                )
            )
            assert "on update current_timestamp" in (updated.scalar_one() or "").lower()
    finally:
        await engine.dispose()


async def test_inspection_queries_and_decimals(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(
                insert(trading_signals).values(
                    symbol="XRP-USD", price=Decimal("0.29123456"), signal_type="BUY", confidence=Decimal("0.7312")
                )
            )
            assert result.inserted_primary_key is not None
            signal_id = result.inserted_primary_key[0]
            await conn.execute(
                insert(trade_recommendations).values(
                    signal_id=signal_id,
                    symbol="XRP-USD",
                    signal_type="BUY",
                    amount_usd=Decimal("100"),
                    confidence=Decimal("0.7312"),
                    execution_status="EXECUTED",
                )
            )
        async with engine.connect() as conn:
            signals = (await conn.execute(text("SELECT * FROM trading_signals ORDER BY timestamp DESC LIMIT 10"))).all()
            recommendations = (
                await conn.execute(text("SELECT * FROM trade_recommendations ORDER BY created_at DESC LIMIT 10"))
            ).all()
            executed = await conn.execute(
                text(
                    "SELECT COUNT(*) as executed_trades FROM trade_recommendations WHERE execution_status = 'EXECUTED'"
                )
            )
            assert len(signals) == 1
            assert len(recommendations) == 1
            assert executed.scalar_one() == 1
            row = (await conn.execute(select(trading_signals))).one()
            # Decimals stay Decimal, exact to the column's scale; the original defaults apply.
            assert row.price == Decimal("0.29123456")
            assert isinstance(row.price, Decimal)
            assert row.threshold == Decimal("0.8000")
            assert row.regime == "bull"
            assert row.features_used == 79
            assert row.data_source == "database"
            assert row.is_mock is False
            assert row.timestamp.tzinfo is not None
    finally:
        await engine.dispose()
