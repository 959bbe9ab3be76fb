"""Archiving old rows (`cts archive`): processed signals and finished recommendations older than a cutoff move
into trading_signals_archive / trade_recommendations_archive in small batches.

Each batch is one transaction (copy, then delete exactly the copied ids), so the job is safe while the services
run and can be interrupted and resumed at any point: a row is either live or archived, never both, never neither.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.errors import InvalidArgumentError
from common.lifecycle import ExecutionStatus
from common.tables import (
    trade_recommendations,
    trade_recommendations_archive,
    trading_signals,
    trading_signals_archive,
)

FINISHED = tuple(s.value for s in (ExecutionStatus.EXECUTED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED))
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '90m', '2w' -> timedelta (must be positive)."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([dhmw])\s*", text)
    if not match or int(match.group(1)) == 0:
        raise InvalidArgumentError(f"--older-than must look like 30d, 12h, 90m or 2w, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class ArchivePlan:
    live: Table
    archive: Table
    condition: Callable[[datetime], ColumnElement[bool]]


PLANS = [
    ArchivePlan(
        trading_signals,
        trading_signals_archive,
        lambda cutoff: and_(trading_signals.c.processed.is_(True), trading_signals.c.created_at < cutoff),
    ),
    ArchivePlan(
        trade_recommendations,
        trade_recommendations_archive,
        lambda cutoff: and_(
            trade_recommendations.c.execution_status.in_(FINISHED), trade_recommendations.c.created_at < cutoff
        ),
    ),
]


@dataclass
class TableReport:
    table: str
    eligible_before: int
    live_before: int
    archived_before: int
    moved: int = 0
    # Live rows whose id already exists in the archive (an id reused by the database): left in place, reported.
    conflicts: int = 0
    live_after: int = 0
    archived_after: int = 0
    old_total_before: int = 0  # rows older than the cutoff, live + archive
    old_total_after: int = 0

    @property
    def consistent(self) -> bool:
        """Nothing lost or duplicated: the old rows are all still there, exactly once."""
        return (
            self.old_total_before == self.old_total_after and self.archived_after == self.archived_before + self.moved
        )


async def _count(engine: AsyncEngine, table: Table, where: ColumnElement[bool] | None = None) -> int:
    query = select(func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _old_total(engine: AsyncEngine, plan: ArchivePlan, cutoff: datetime) -> int:
    live = await _count(engine, plan.live, plan.live.c.created_at < cutoff)
    archived = await _count(engine, plan.archive, plan.archive.c.created_at < cutoff)
    return live + archived


async def archive(
    engine: AsyncEngine,
    cutoff: datetime,
    *,
    batch: int = 5000,
    dry_run: bool = False,
    max_batches: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[TableReport]:
    """Move eligible rows older than ``cutoff``; returns per-table reports with counts before and after."""
    if not 1 <= batch <= 100_000:
        raise InvalidArgumentError("--batch must be between 1 and 100000")
    reports = []
    for plan in PLANS:
        report = TableReport(
            table=plan.live.name,
            eligible_before=await _count(engine, plan.live, plan.condition(cutoff)),
            live_before=await _count(engine, plan.live),
            archived_before=await _count(engine, plan.archive),
            old_total_before=await _old_total(engine, plan, cutoff),
        )
        batches = 0
        after_id = 0
        while not dry_run and (max_batches is None or batches < max_batches):
            selected, moved, after_id = await _move_batch(engine, plan, cutoff, batch, after_id)
            batches += 1
            report.moved += moved
            report.conflicts += selected - moved
            if progress is not None:
                progress(plan.live.name, report.moved)
            if selected < batch:
                break
        report.live_after = await _count(engine, plan.live)
        report.archived_after = await _count(engine, plan.archive)
        report.old_total_after = await _old_total(engine, plan, cutoff)
        reports.append(report)
    return reports


async def _move_batch(
    engine: AsyncEngine, plan: ArchivePlan, cutoff: datetime, batch: int, after_id: int
) -> tuple[int, int, int]:
    """Move up to ``batch`` eligible rows with id > after_id in one transaction.

    Returns (rows selected, rows moved, last id seen)."""
    live, archive_table = plan.live, plan.archive
    columns = [c.name for c in live.columns]
    async with engine.begin() as conn:
        query = select(live.c.id).where(plan.condition(cutoff), live.c.id > after_id).order_by(live.c.id).limit(batch)
        if conn.dialect.name != "sqlite":
            query = query.with_for_update(skip_locked=True)
        ids = list((await conn.execute(query)).scalars())
        if not ids:
            return 0, 0, after_id
        clash = set((await conn.execute(select(archive_table.c.id).where(archive_table.c.id.in_(ids)))).scalars())
        fresh = [i for i in ids if i not in clash]
        if fresh:
            await conn.execute(
                insert(archive_table).from_select(
                    columns, select(*[live.c[name] for name in columns]).where(live.c.id.in_(fresh))
                )
            )
            await conn.execute(delete(live).where(live.c.id.in_(fresh)))
        return len(ids), len(fresh), ids[-1]
