"""Rich rendering of a StatusSnapshot (and of service health) for `cts status` and the `cts up` dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cts.status_queries import StatusSnapshot

HEALTH_STYLE = {"SERVING": "green", "NOT_SERVING": "red", "STARTING": "yellow"}


def _money(value: Decimal | None, places: str = "0.01") -> str:
    return "-" if value is None else f"{value.quantize(Decimal(places)):,}"


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def health_table(health: Mapping[str, str]) -> Table:
    table = Table(title="Services", expand=True)
    table.add_column("service")
    table.add_column("health")
    for name, status in health.items():
        table.add_row(name, Text(status, style=HEALTH_STYLE.get(status.split(" ")[0], "red")))
    return table


def counts_table(snap: StatusSnapshot) -> Table:
    table = Table(title="Pipeline", expand=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    for kind in ("BUY", "SELL", "HOLD"):
        table.add_row(f"signals {kind}", str(snap.signals_by_type.get(kind, 0)))
    for status in ("PENDING", "EXECUTED", "FAILED", "CANCELLED"):
        table.add_row(f"recommendations {status}", str(snap.recommendations_by_status.get(status, 0)))
    table.add_row("trading halted", f"yes: {snap.halt_reason}" if snap.trading_halted else "no")
    if snap.replay_clock is not None:
        table.add_row("replay market time", _time(snap.replay_clock))
    return table


def trades_table(snap: StatusSnapshot) -> Table:
    table = Table(title="Latest trades", expand=True)
    for column in ("rec", "symbol", "side", "status", "mode", "size", "price", "fees", "note"):
        table.add_column(column, justify="right" if column in ("rec", "size", "price", "fees") else "left")
    for t in snap.latest_trades:
        style = {"EXECUTED": "green", "FAILED": "red"}.get(t.status, "yellow")
        table.add_row(
            str(t.recommendation_id),
            t.symbol,
            t.side,
            Text(t.status, style=style),
            t.mode,
            "-" if t.filled_size is None else f"{t.filled_size.normalize():f}",
            _money(t.average_price, "0.0001"),
            _money(t.fees, "0.0001"),
            (t.error or "")[:40],
        )
    return table


def portfolio_table(snap: StatusSnapshot) -> Table:
    table = Table(title="Paper portfolio", expand=True)
    table.add_column("asset")
    table.add_column("quantity", justify="right")
    table.add_column("price", justify="right")
    table.add_column("value USD", justify="right")
    for h in snap.holdings:
        table.add_row(h.asset, f"{h.quantity.normalize():f}", _money(h.price, "0.0001"), _money(h.value_usd))
    pnl = snap.profit_and_loss
    table.add_row("equity", "", "", _money(snap.equity_usd))
    pnl_text = Text("-" if pnl is None else f"{pnl:+,.2f}", style="green" if (pnl or 0) >= 0 else "red")
    table.add_row("P&L vs start", "", f"start {_money(snap.starting_cash)}", pnl_text)
    table.add_row("fees paid", "", "", _money(snap.fees_paid))
    return table


def tables_table(snap: StatusSnapshot) -> Table:
    table = Table(title="Tables (sizes, oldest row)", expand=True)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("oldest", justify="right")
    for t in snap.tables:
        table.add_row(t.name, f"{t.rows:,}", _time(t.oldest))
    return table


def render(snap: StatusSnapshot, health: Mapping[str, str] | None = None, *, tables: bool = False) -> RenderableType:
    parts: list[RenderableType] = []
    if health is not None:
        parts.append(health_table(health))
    parts += [counts_table(snap), trades_table(snap), portfolio_table(snap)]
    if tables:
        parts.append(tables_table(snap))
    return Group(*parts)
