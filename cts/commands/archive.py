"""`cts archive --older-than 30d [--batch 5000] [--dry-run]`: move processed signals and finished recommendations
older than the cutoff into the archive tables, in small batches, safe while the services run."""

from __future__ import annotations

import argparse
import asyncio

HELP = "move old processed signals and finished recommendations into archive tables (batched, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", required=True, help="age cutoff, e.g. 30d, 12h, 2w")
    parser.add_argument("--batch", type=int, default=5000, help="rows per transaction (default 5000)")
    parser.add_argument("--dry-run", action="store_true", help="only report what would move")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from common.clock import utc_now
    from common.database import create_engine
    from common.errors import InvalidArgumentError
    from cts.archive import archive, parse_age
    from cts.settings import settings_or_exit

    settings = settings_or_exit()
    console = Console()
    try:
        cutoff = utc_now() - parse_age(args.older_than)
    except InvalidArgumentError as exc:
        console.print(f"cts archive: {exc}")
        return 2

    async def go() -> int:
        engine = create_engine(settings.database_url)
        try:
            reports = await archive(
                engine,
                cutoff,
                batch=args.batch,
                dry_run=args.dry_run,
                progress=lambda table, moved: console.print(f"  {table}: {moved} rows moved", highlight=False),
            )
        except InvalidArgumentError as exc:
            console.print(f"cts archive: {exc}")
            return 2
        finally:
            await engine.dispose()
        table = Table(title=f"archive older than {cutoff:%Y-%m-%d %H:%M} UTC" + (" (dry run)" if args.dry_run else ""))
        for column in ("table", "eligible", "moved", "live before", "live after", "archived before", "archived after"):
            table.add_column(column, justify="left" if column == "table" else "right")
        ok = True
        for r in reports:
            table.add_row(
                r.table,
                str(r.eligible_before),
                str(r.moved),
                str(r.live_before),
                str(r.live_after),
                str(r.archived_before),
                str(r.archived_after),
            )
            ok = ok and r.consistent
        console.print(table)
        if not ok:
            console.print("[red]cts archive: counts before and after do not match; investigate before retrying[/red]")
            return 1
        console.print("counts checked: every old row is present exactly once (live or archive)")
        return 0

    return asyncio.run(go())
