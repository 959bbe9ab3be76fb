"""Adopting a database created by the original deployment guide's DDL (issue 2): ``trading_signals`` and
``trade_recommendations`` already exist, with rows, and there is no Alembic history.

:func:`differences` runs before Alembic touches anything (common.migrate): it checks every original column's type
(and that the required ones are NOT NULL), and that columns or indexes the project would add are either absent or
already exactly what the project would add. Any difference: nothing is changed and every difference is named.

:func:`adopt` runs inside revision 0001, after the project's other tables are created. It never drops a row and
never changes an original column's value:

- ``trading_signals``: adds the columns of revision 0001, back-fills ``candle_time`` (the start of the last hourly
  candle closed when the signal was written: the hour of ``timestamp``, else ``created_at``, minus one hour) on the
  first signal (lowest id) of each symbol and candle; later signals of the same symbol and candle (the original
  generator wrote one every 5 minutes) keep ``candle_time`` NULL and get ``processed_reason`` =
  ``duplicate candle (adopted)``; then the indexes and UNIQUE(symbol, candle_time).
- ``trade_recommendations``: adds the columns, back-fills ``pending_key`` (``SYMBOL:SIDE``) on the newest PENDING
  BUY/SELL row of each symbol and side (older PENDING rows of the same symbol and side keep NULL and get a
  ``status_reason`` saying so: they stay PENDING); a recommendation whose ``signal_id`` repeats an earlier
  recommendation's (lowest id kept) is moved, unchanged, to ``trade_recommendations_archive`` with a
  ``status_reason`` naming the one kept, so UNIQUE(signal_id) holds and no row is lost; then the indexes and
  the unique keys.

Updates set ``updated_at = updated_at`` so MySQL's ON UPDATE CURRENT_TIMESTAMP leaves the original value alone.
Each step only touches rows (and adds only columns, indexes and tables) it has not handled yet, so that
running it again after an interruption inside revision 0001 continues where it stopped."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from common.tables import metadata

MYSQL = ("mysql", "mariadb")
ORIGINAL_TABLES = ("trading_signals", "trade_recommendations")

# The deployment guide's DDL: column -> (type as information_schema.columns.column_type, normalised; NOT NULL).
ORIGINAL_COLUMNS: dict[str, dict[str, tuple[str, bool]]] = {
    "trading_signals": {
        "id": ("int", True),
        "timestamp": ("timestamp", False),
        "symbol": ("varchar(50)", True),
        "price": ("decimal(15,8)", False),
        "signal_type": ("enum('BUY','SELL','HOLD')", True),
        "model": ("varchar(100)", False),
        "confidence": ("decimal(6,4)", True),
        "threshold": ("decimal(6,4)", False),
        "regime": ("varchar(50)", False),
        "model_version": ("varchar(100)", False),
        "features_used": ("int", False),
        "xgboost_confidence": ("decimal(6,4)", False),
        "data_source": ("varchar(100)", False),
        "created_at": ("timestamp", False),
        "is_mock": ("tinyint(1)", False),
        "processed": ("tinyint(1)", False),
        "prediction": ("decimal(6,4)", False),
    },
    "trade_recommendations": {
        "id": ("int", True),
        "signal_id": ("int", False),
        "symbol": ("varchar(50)", True),
        "signal_type": ("enum('BUY','SELL','HOLD','STRONG_BUY','STRONG_SELL')", True),
        "amount_usd": ("decimal(15,8)", True),
        "confidence": ("decimal(6,4)", True),
        "reasoning": ("text", False),
        "execution_status": ("enum('PENDING','EXECUTED','FAILED','CANCELLED')", False),
        "entry_price": ("decimal(15,8)", False),
        "stop_loss": ("decimal(15,8)", False),
        "take_profit": ("decimal(15,8)", False),
        "position_size_percent": ("decimal(5,2)", False),
        "amount_crypto": ("decimal(20,8)", False),
        "is_mock": ("tinyint(1)", False),
        "created_at": ("timestamp", False),
        "updated_at": ("timestamp", False),
        "executed_at": ("timestamp", False),
    },
}
# What revision 0001 adds to each original table (later revisions add their own columns themselves).
ADDED_COLUMNS = {
    "trading_signals": ("candle_time", "buy_probability", "sell_probability", "hold_probability", "processed_reason"),
    "trade_recommendations": ("pending_key", "claimed_by", "claimed_until", "status_reason"),
}
# name -> (columns, unique)
ADDED_INDEXES: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "trading_signals": {
        "idx_signals_timestamp": (("timestamp",), False),
        "idx_signals_processed_created": (("processed", "created_at"), False),
        "uq_trading_signals_symbol_candle": (("symbol", "candle_time"), True),
    },
    "trade_recommendations": {
        "idx_signal_id": (("signal_id",), False),
        "idx_symbol": (("symbol",), False),
        "idx_status": (("execution_status",), False),
        "idx_created_at": (("created_at",), False),
        "uq_trade_recommendations_signal_id": (("signal_id",), True),
        "uq_trade_recommendations_pending_key": (("pending_key",), True),
    },
}
DUPLICATE_CANDLE = "duplicate candle (adopted)"


class SchemaIncompatible(Exception):
    """The existing tables cannot be adopted; nothing was changed."""

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__(
            "the existing tables differ from the deployment guide's schema; nothing was changed:\n"
            + "\n".join(f"  {line}" for line in differences)
        )


@dataclass(frozen=True)
class _Column:
    type: str
    nullable: bool
    key: str
    extra: str


def normalise_type(column_type: str) -> str:
    """information_schema.columns.column_type (or a compiled SQLAlchemy type) in one comparable spelling."""
    value = column_type.strip()
    if value.lower().startswith(("enum(", "set(")):  # the values are case-sensitive
        head, _, rest = value.partition("(")
        return f"{head.lower()}({rest.replace(' ', '')}"
    value = re.sub(r"\s+", "", value.lower())
    value = re.sub(r"^(int|integer)(\(\d+\))?", "int", value)
    return {"bool": "tinyint(1)", "boolean": "tinyint(1)"}.get(value, value)


def existing_tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def needs_adoption(conn: Connection) -> bool:
    return bool(existing_tables(conn) & set(ORIGINAL_TABLES))


def _columns(conn: Connection, table: str) -> dict[str, _Column]:
    rows = conn.execute(
        sa.text(
            "SELECT column_name, column_type, is_nullable, column_key, extra FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = :t"
        ),
        {"t": table},
    )
    return {
        str(r[0]): _Column(normalise_type(str(r[1])), str(r[2]).upper() == "YES", str(r[3] or ""), str(r[4] or ""))
        for r in rows
    }


def _indexes(conn: Connection, table: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    rows = conn.execute(
        sa.text(
            "SELECT index_name, column_name, non_unique FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = :t ORDER BY index_name, seq_in_index"
        ),
        {"t": table},
    )
    found: dict[str, tuple[tuple[str, ...], bool]] = {}
    for name, column, non_unique in rows:
        columns, _ = found.get(str(name), ((), False))
        found[str(name)] = ((*columns, str(column)), not int(non_unique))
    return found


def _project_type(conn: Connection, table: str, column: str) -> str:
    return normalise_type(str(metadata.tables[table].c[column].type.compile(dialect=conn.dialect)))


def differences(conn: Connection) -> list[str]:
    """Why the original tables in this database cannot be adopted ([] when they can, or when there are none)."""
    present = existing_tables(conn)
    originals = [t for t in ORIGINAL_TABLES if t in present]
    if not originals:
        return []
    if conn.dialect.name not in MYSQL:
        return [f"{', '.join(originals)}: adopting existing tables is supported on MySQL/MariaDB only"]
    problems: list[str] = []
    for table in originals:
        actual = _columns(conn, table)
        for name, (expected, required) in ORIGINAL_COLUMNS[table].items():
            column = actual.get(name)
            if column is None:
                problems.append(f"{table}.{name}: missing (expected {expected})")
                continue
            if column.type != expected:
                problems.append(f"{table}.{name}: is {column.type}, expected {expected}")
            if required and column.nullable:
                problems.append(f"{table}.{name}: allows NULL, expected NOT NULL")
        id_column = actual.get("id")
        if id_column is not None and (id_column.key != "PRI" or "auto_increment" not in id_column.extra.lower()):
            problems.append(f"{table}.id: expected the AUTO_INCREMENT primary key")
        for name in ADDED_COLUMNS[table]:
            column = actual.get(name)
            expected = _project_type(conn, table, name)
            if column is not None and column.type != expected:
                problems.append(f"{table}.{name}: exists as {column.type}; the project adds it as {expected}")
        for name, column in actual.items():
            known = name in ORIGINAL_COLUMNS[table] or name in metadata.tables[table].c
            if not known and not column.nullable and "default" not in column.extra.lower():
                problems.append(f"{table}.{name}: an unknown NOT NULL column; the services could not insert rows")
        indexes = _indexes(conn, table)
        for name, (columns, unique) in ADDED_INDEXES[table].items():
            found = indexes.get(name)
            if found is not None and found != (columns, unique):
                kind = "UNIQUE " if found[1] else ""
                problems.append(f"{table}: index {name} is {kind}({', '.join(found[0])}), expected {columns}")
    return problems


def require_compatible(conn: Connection) -> None:
    problems = differences(conn)
    if problems:
        raise SchemaIncompatible(problems)


def adopt(conn: Connection, tables: set[str]) -> None:
    """Bring the original tables in ``tables`` to revision 0001 (see the module docstring)."""
    if "trading_signals" in tables:
        _add_columns(conn, "trading_signals")
        _backfill_candle_time(conn)
        _add_indexes(conn, "trading_signals")
    if "trade_recommendations" in tables:
        _add_columns(conn, "trade_recommendations")
        _archive_duplicate_signal_ids(conn)
        _backfill_pending_key(conn)
        _add_indexes(conn, "trade_recommendations")


def _add_columns(conn: Connection, table: str) -> None:
    present = _columns(conn, table)
    for name in ADDED_COLUMNS[table]:
        if name not in present:
            op.add_column(table, metadata.tables[table].c[name]._copy())


def _add_indexes(conn: Connection, table: str) -> None:
    present = _indexes(conn, table)
    for name, (columns, unique) in ADDED_INDEXES[table].items():
        if name in present:
            continue
        if unique:
            op.create_unique_constraint(name, table, list(columns))
        else:
            op.create_index(name, table, list(columns))


_CANDLE = "CAST(DATE_FORMAT(COALESCE(s.timestamp, s.created_at), '%Y-%m-%d %H:00:00') AS DATETIME) - INTERVAL 1 HOUR"


def _backfill_candle_time(conn: Connection) -> None:
    # The first signal of each symbol and candle that has none yet; rows already holding a candle win.
    conn.execute(
        sa.text(
            "UPDATE trading_signals t JOIN ("
            f"  SELECT MIN(s.id) AS id, {_CANDLE} AS candle FROM trading_signals s"
            "   WHERE s.candle_time IS NULL AND s.processed_reason IS NULL"
            "     AND COALESCE(s.timestamp, s.created_at) IS NOT NULL"
            f"  GROUP BY s.symbol, {_CANDLE}"
            ") f ON t.id = f.id "
            "LEFT JOIN trading_signals taken ON taken.symbol = t.symbol AND taken.candle_time = f.candle "
            "SET t.candle_time = f.candle, t.timestamp = t.timestamp, t.created_at = t.created_at "
            "WHERE taken.id IS NULL"
        )
    )
    conn.execute(
        sa.text(
            "UPDATE trading_signals s SET s.processed_reason = :reason, s.timestamp = s.timestamp, "
            "s.created_at = s.created_at "
            "WHERE s.candle_time IS NULL AND s.processed_reason IS NULL "
            "AND COALESCE(s.timestamp, s.created_at) IS NOT NULL"
        ),
        {"reason": DUPLICATE_CANDLE},
    )


def _archive_duplicate_signal_ids(conn: Connection) -> None:
    archive = metadata.tables["trade_recommendations_archive"]
    table = "trade_recommendations"
    columns = [c for c in (*ORIGINAL_COLUMNS[table], *ADDED_COLUMNS[table]) if c != "status_reason"]
    names = ", ".join(f"`{c}`" for c in columns)
    selected = ", ".join(f"r.`{c}`" for c in columns)
    duplicates = (
        "SELECT r2.id AS id, MIN(r1.id) AS kept FROM trade_recommendations r2 "
        "JOIN trade_recommendations r1 ON r1.signal_id = r2.signal_id AND r1.id < r2.id GROUP BY r2.id"
    )
    conn.execute(
        sa.text(
            f"INSERT INTO {archive.name} ({names}, status_reason) "
            f"SELECT {selected}, CONCAT('duplicate of recommendation ', d.kept, ' for signal ', r.signal_id, "
            "'; moved here unchanged by cts migrate (UNIQUE signal_id)') "
            f"FROM trade_recommendations r JOIN ({duplicates}) d ON d.id = r.id "
            f"WHERE r.id NOT IN (SELECT id FROM {archive.name})"
        )
    )
    conn.execute(
        sa.text(
            f"DELETE r FROM trade_recommendations r JOIN ({duplicates}) d ON d.id = r.id "
            f"JOIN {archive.name} a ON a.id = r.id"
        )
    )


_SIDE = "CASE WHEN r.signal_type IN ('BUY', 'STRONG_BUY') THEN 'BUY' ELSE 'SELL' END"


def _backfill_pending_key(conn: Connection) -> None:
    open_rows = (
        "r.execution_status = 'PENDING' AND r.signal_type IN ('BUY', 'SELL', 'STRONG_BUY', 'STRONG_SELL') "
        "AND r.pending_key IS NULL AND r.status_reason IS NULL"
    )
    conn.execute(
        sa.text(
            "UPDATE trade_recommendations t JOIN ("
            f"  SELECT MAX(r.id) AS id, CONCAT(r.symbol, ':', {_SIDE}) AS pkey FROM trade_recommendations r"
            f"  WHERE {open_rows} GROUP BY r.symbol, {_SIDE}"
            ") n ON t.id = n.id "
            "LEFT JOIN trade_recommendations taken ON taken.pending_key = n.pkey "
            "SET t.pending_key = n.pkey, t.updated_at = t.updated_at "
            "WHERE taken.id IS NULL"
        )
    )
    conn.execute(
        sa.text(
            "UPDATE trade_recommendations r SET r.status_reason = :reason, r.updated_at = r.updated_at "
            f"WHERE {open_rows}"
        ),
        {"reason": "adopted by cts migrate: a newer open recommendation exists for this symbol and side"},
    )
