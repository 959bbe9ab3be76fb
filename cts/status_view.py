"""Rich rendering of a StatusSnapshot: the `cts up` live view (sized to the terminal) and `cts status`.

The live view fits an 80x24 terminal and grows with it: the headline (equity, P&L, market time), the replay's
progress, services' health, the trade cap and the halt always show; open positions, the latest trades and the latest
actionable signals share the remaining lines, newest first, and take more rows (and columns) when there is room."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from common.lifecycle import ExecutionStatus, OrderStatus
from cts.status_queries import StatusSnapshot

HEALTH_STYLE = {"SERVING": "green", "NOT_SERVING": "red", "STARTING": "yellow"}
QUIT_KEY = "Ctrl-C to quit"


@dataclass(frozen=True)
class TradeCap:
    max_trades: int
    window_seconds: float


def money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.quantize(Decimal('0.01')):,}"


def signed_money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.quantize(Decimal('0.01')):+,}"


def percent(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.quantize(Decimal('0.01')):+} %"


def price(value: Decimal | None) -> str:
    """A price with about six significant digits and never in exponent notation (SHIB is near 0.00002)."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value.quantize(Decimal('0.01')):,}"
    if value >= 1:
        return f"{value.quantize(Decimal('0.0001'))}"
    if value == 0:
        return "0"
    digits = max(4, -value.adjusted() + 5)
    return f"{value.quantize(Decimal(1).scaleb(-digits)).normalize():f}"


def quantity(value: Decimal | None) -> str:
    """A size with at most eight significant digits (and at most eight decimals), never in exponent notation."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    places = min(8, max(0, 7 - value.adjusted()))
    return f"{value.quantize(Decimal(1).scaleb(-places)).normalize():f}"


def _time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "-" if value is None else value.strftime(fmt)


def _pnl_text(value: Decimal | None, suffix: str = "") -> Text:
    if value is None:
        return Text("-")
    return Text(signed_money(value) + suffix, style="green" if value >= 0 else "red")


def _table(title: str, wide: bool) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD if wide else None,
        expand=True,
        pad_edge=False,
        show_edge=False,
        padding=(0, 1),
    )


# --- the pieces -------------------------------------------------------------------------------------------------


def headline(snap: StatusSnapshot) -> Text:
    pnl = snap.profit_and_loss
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append_text(
        Text.assemble(
            ("Equity ", "bold"),
            (f"${money(snap.equity_usd)}", "bold"),
            "  P&L ",
            _pnl_text(pnl),
            " (",
            Text(percent(snap.profit_and_loss_percent), style="green" if (pnl or 0) >= 0 else "red"),
            ")",
        )
    )
    if snap.replay_clock is not None:
        text.append(f"  market {_time(snap.replay_clock, '%Y-%m-%d %H:%M')}")
    return text


def replay_line(snap: StatusSnapshot, width: int) -> RenderableType:
    progress = snap.replay_progress
    if progress is None:
        return Text("Replay: starting ..." if snap.replay_clock is None else "Live market data", style="dim")
    if progress.finished:
        return Text.assemble(
            ("Replay finished", "bold green"),
            f": all {progress.total:,} candles replayed. `make run` starts a new replay; {QUIT_KEY}.",
        )
    label = f" {progress.released:,}/{progress.total:,} candles ({progress.fraction:.0%})"
    bar_width = max(10, width - len("Replay ") - len(label) - 1)
    table = Table.grid(padding=0)
    table.add_row(
        Text("Replay "), ProgressBar(total=progress.total, completed=progress.released, width=bar_width), Text(label)
    )
    return table


def services_line(health: Mapping[str, str] | None, snap: StatusSnapshot) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for name, status in (health or {}).items():
        state = status.split(" ")[0]
        text.append(f"{name} ")
        text.append(
            "OK" if state == "SERVING" else state.replace("_", " ").lower(), style=HEALTH_STYLE.get(state, "red")
        )
        text.append("  ")
    if snap.trading_halted:
        text.append(f"HALTED: {snap.halt_reason}", style="bold red")
    else:
        text.append("trading on", style="green")
    return text


def pipeline_line(snap: StatusSnapshot, cap: TradeCap | None) -> Text:
    signals = snap.signals_by_type
    recs = snap.recommendations_by_status
    text = Text(no_wrap=True, overflow="ellipsis")
    if cap is not None:
        text.append(f"cap {snap.trades_in_cap_window}/{cap.max_trades} per {cap.window_seconds:g}s  ")
    text.append(
        f"signals {signals.get('BUY', 0):,} BUY {signals.get('SELL', 0):,} SELL  "
        f"orders {recs.get('EXECUTED', 0):,} done {recs.get('FAILED', 0):,} failed  cash ${money(snap.cash_usd)}",
        style="dim",
    )
    return text


def positions_table(snap: StatusSnapshot, rows: int | None, wide: bool) -> Table:
    table = _table(f"Open positions ({len(snap.positions)})", wide)
    columns = ["symbol" if wide else "asset", "quantity", "entry", "price", "P&L $", "P&L %", "stop", "target"]
    if wide:
        columns.insert(4, "value $")
    for column in columns:
        table.add_column(column, justify="left" if column in ("symbol", "asset") else "right", no_wrap=True)
    shown = snap.positions if rows is None else snap.positions[:rows]
    for p in shown:
        pct = p.unrealized_pnl_percent
        cells: list[str | Text] = [
            p.symbol if wide else p.symbol.removesuffix("-USD"),
            quantity(p.quantity),
            price(p.entry_price),
            price(p.price),
            _pnl_text(p.unrealized_pnl),
            Text(percent(pct), style="green" if (pct or 0) >= 0 else "red"),
            price(p.stop_loss),
            price(p.take_profit),
        ]
        if wide:
            cells.insert(4, money(p.value_usd))
        table.add_row(*cells)
    if not snap.positions:
        table.add_row(Text("none", style="dim"), *[""] * (len(columns) - 1))
    return table


# A SELL that closed a position, by why: the side column shows "SELL stop", "SELL target", "SELL time".
EXIT_LABELS = {"stop_loss": "stop", "take_profit": "target", "time_limit": "time"}


def trades_table(snap: StatusSnapshot, rows: int | None, wide: bool) -> Table:
    table = _table("Latest trades (newest first)", wide)
    columns = ["time", "rec", "symbol", "side", "status", "size", "signal", "fill"]
    if wide:
        columns += ["fees", "mode", "note"]
    for column in columns:
        right = column in ("rec", "size", "signal", "fill", "fees")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "note", overflow="ellipsis")
    shown = snap.latest_trades if rows is None else snap.latest_trades[:rows]
    for t in shown:
        style = {OrderStatus.EXECUTED: "green", OrderStatus.FAILED: "red"}.get(OrderStatus(t.status), "yellow")
        cells: list[str | Text] = [
            _time(t.at, "%m-%d %H:%M:%S" if wide else "%H:%M:%S"),
            str(t.recommendation_id),
            t.symbol,
            f"{t.side} {EXIT_LABELS[t.exit_reason]}" if t.exit_reason in EXIT_LABELS else t.side,
            Text(t.status[:8] if not wide else t.status, style=style),
            quantity(t.filled_size),
            price(t.signal_price),
            price(t.average_price),
        ]
        if wide:
            cells += [money(t.fees), t.mode, (t.error or "")[:60]]
        table.add_row(*cells)
    if not snap.latest_trades:
        table.add_row(Text("none yet", style="dim"), *[""] * (len(columns) - 1))
    return table


def signals_table(snap: StatusSnapshot, rows: int | None, wide: bool) -> Table:
    table = _table("Latest BUY/SELL signals", wide)
    columns = ["candle", "symbol", "signal", "confidence", "price"]
    if wide:
        columns.append("bridge")
    for column in columns:
        table.add_column(column, justify="right" if column in ("confidence", "price") else "left", no_wrap=True)
    shown = snap.latest_signals if rows is None else snap.latest_signals[:rows]
    for s in shown:
        cells: list[str | Text] = [
            _time(s.candle_time, "%Y-%m-%d %H:%M"),
            s.symbol,
            Text(s.signal_type, style="green" if s.signal_type == "BUY" else "red"),
            f"{s.confidence:.4f}",
            price(s.price),
        ]
        if wide:
            cells.append(s.processed_reason or "")
        table.add_row(*cells)
    if not snap.latest_signals:
        table.add_row(Text("none yet", style="dim"), *[""] * (len(columns) - 1))
    return table


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
    for status in ExecutionStatus:
        table.add_row(f"recommendations {status}", str(snap.recommendations_by_status.get(status, 0)))
    table.add_row("trading halted", f"yes: {snap.halt_reason}" if snap.trading_halted else "no")
    if snap.replay_clock is not None:
        table.add_row("replay market time", _time(snap.replay_clock))
    return table


def portfolio_table(snap: StatusSnapshot) -> Table:
    table = Table(title="Paper portfolio", expand=True)
    table.add_column("asset")
    table.add_column("quantity", justify="right")
    table.add_column("price", justify="right")
    table.add_column("value USD", justify="right")
    for h in snap.holdings:
        table.add_row(h.asset, quantity(h.quantity), price(h.price), money(h.value_usd))
    table.add_row("equity", "", "", money(snap.equity_usd))
    table.add_row("P&L vs start", "", f"start {money(snap.starting_cash)}", _pnl_text(snap.profit_and_loss))
    table.add_row("fees paid", "", "", money(snap.fees_paid))
    return table


def tables_table(snap: StatusSnapshot) -> Table:
    table = Table(title="Tables (sizes, oldest row)", expand=True)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("oldest", justify="right")
    for t in snap.tables:
        table.add_row(t.name, f"{t.rows:,}", _time(t.oldest))
    return table


# --- compositions -----------------------------------------------------------------------------------------------


def _share(budget: int, wanted: list[int]) -> list[int]:
    """Split ``budget`` rows between sections that want ``wanted`` rows each: at least one each while the budget
    lasts, then one more each in turn, so every section grows with the terminal."""
    given = [0] * len(wanted)
    while budget > 0 and any(g < w for g, w in zip(given, wanted, strict=True)):
        for i, want in enumerate(wanted):
            if budget > 0 and given[i] < want:
                given[i] += 1
                budget -= 1
    return given


def render_dashboard(
    snap: StatusSnapshot,
    health: Mapping[str, str] | None,
    *,
    width: int,
    height: int,
    cap: TradeCap | None = None,
) -> RenderableType:
    """The `cts up` live view, at most ``height`` lines of ``width`` columns."""
    wide = width >= 120
    top: list[RenderableType] = [
        headline(snap),
        replay_line(snap, width),
        services_line(health, snap),
        pipeline_line(snap, cap),
    ]
    footer = Text(QUIT_KEY, style="dim")
    # Each table costs its title and header line (and the rule under the header in the wide style).
    overhead = 3 if wide else 2
    budget = height - len(top) - 1 - 3 * overhead
    wanted = [max(1, len(snap.positions)), max(1, len(snap.latest_trades)), max(1, len(snap.latest_signals))]
    rows = _share(max(0, budget), wanted)
    sections: list[RenderableType] = []
    for make, count in zip((positions_table, trades_table, signals_table), rows, strict=True):
        if count > 0:
            sections.append(make(snap, count, wide))
    return Group(*top, *sections, footer)


def reconciliation_line(snap: StatusSnapshot) -> Text | None:
    """The live executor's last comparison with the exchange; None when there is none (paper trading)."""
    report = snap.reconciliation
    if not report:
        return None
    unknown, mismatches = int(report.get("unknown_count", 0)), int(report.get("mismatch_count", 0))
    text = Text(
        f"Reconciliation {report.get('checked_at', '?')}: {report.get('orders_seen', 0)} exchange order(s), "
        f"{unknown} unknown, {mismatches} disagreeing, {report.get('unresolved', 0)} unfinished",
        style="bold red" if unknown or mismatches else "green",
    )
    for line in [*report.get("unknown", []), *report.get("mismatches", [])]:
        text.append(f"\n  {line}")
    return text


def render(snap: StatusSnapshot, health: Mapping[str, str] | None = None, *, tables: bool = False) -> RenderableType:
    """`cts status`: everything, unabridged."""
    parts: list[RenderableType] = []
    if health is not None:
        parts.append(health_table(health))
    reconciliation = reconciliation_line(snap)
    if reconciliation is not None:
        parts.append(reconciliation)
    parts += [
        headline(snap),
        counts_table(snap),
        positions_table(snap, None, True),
        trades_table(snap, None, True),
        signals_table(snap, None, True),
        portfolio_table(snap),
    ]
    if tables:
        parts.append(tables_table(snap))
    return Group(*parts)
