"""Render bench/results.json as a Markdown table between the BENCH markers of README.md.

A figure is either a number (one run) or ``{"median": m, "range": [min, max]}`` over repeated runs
(bench.harness.aggregate); it is shown as "median (min-max)", the range left out where the runs agree."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

BEGIN = "<!-- BENCH:BEGIN -->"
END = "<!-- BENCH:END -->"


def _stat(value: Any) -> tuple[Any, Any, Any]:
    """(median, min, max) of an aggregated figure, or of a plain number (all three the number)."""
    if isinstance(value, Mapping):
        lo, hi = value["range"]
        return value["median"], lo, hi
    return value, value, value


def _num(value: Any, spec: str, unit: str = "") -> str:
    """The median, the unit, and the range where it differs once formatted: 13.2 ms (12.9-13.5)."""
    median, lo, hi = (format(v, spec) for v in _stat(value))
    return f"{median}{unit}" + (f" ({lo}-{hi})" if lo != hi else "")


def _ratio(value: Any, baseline: Any) -> str:
    """The ratio of two figures' medians."""
    return f"{_stat(value)[0] / _stat(baseline)[0]:.1f}"


def _fmt(summary: dict[str, Any] | None, key: str = "p50_ms") -> str:
    if not summary or key not in summary:
        return "-"
    return _num(summary[key], ".1f", " ms")


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    repeat = int(results.get("repeat", 1))
    runs = (
        f"Each figure is the median of {repeat} runs per scenario and engine, with the range of the runs (min-max) "
        "in brackets where they differ (backtest and training: the median of the runs within one)."
        if repeat > 1
        else "Each figure is from one run (backtest and training: the median of the runs within it)."
    )
    lines = [
        f"Measured {results['when']} with `{results['command']}` on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, Python {m['python']}. {runs}",
        "",
        "Targets: the performance issue's (MariaDB; RSS and start-up: no worse than before it).",
        "",
        "| scenario | target | SQLite | MariaDB |",
        "|---|---|---|---|",
    ]
    s = results["scenarios"]

    def cell(scenario: str, engine: str, render: Any) -> str:
        data = s.get(scenario, {}).get(engine)
        if data is None:
            return "not run"
        if "error" in data and not data.get("runs"):
            return f"error: {data['error'][:60]}"
        try:
            text = str(render(data))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            text = "-"
        if "errors" in data:  # some of the repeated runs failed: the figures are over the others
            text += f" ({len(data['errors'])} of {len(data.get('repetitions', []))} runs failed)"
        return text

    rows = [
        (
            "Generate, 20 symbols x 500 candles (p50)",
            "-",
            "generation",
            lambda d: _fmt(d["generate_20_symbols"]),
        ),
        ("Generate, 200 symbols (p50)", "-", "generation", lambda d: _fmt(d.get("generate_200_symbols"))),
        (
            "Generate on 5-minute-anchored bars, 20 / 200 symbols (p50)",
            "<= 20 / 100 ms",
            "generation",
            lambda d: (
                f"{_fmt(d['generate_5m_anchored_20_symbols'])} / {_fmt(d.get('generate_5m_anchored_200_symbols'))}"
            ),
        ),
        (
            "baseline: per-symbol pandas loop, 20 symbols (p50)",
            "-",
            "generation",
            lambda d: _fmt(d["baseline_pandas_loop_20_symbols"]),
        ),
        (
            "signal -> paper order via nudges (p50 / p99)",
            "<= 7 / 15 ms",
            "signal_to_order",
            lambda d: f"{_fmt(d['latency'])} / {_fmt(d['latency'], 'p99_ms')}",
        ),
        (
            "recommendations executed end to end (x the UPDATE+COMMIT baseline)",
            ">= 4,000/s and >= x4",
            "throughput",
            lambda d: (
                f"{_num(d['per_second'], ',.0f', '/s')}"
                f" (x{_ratio(d['per_second'], d['baseline_update_commit_per_second'])})"
            ),
        ),
        (
            "baseline: single-row UPDATE+COMMIT",
            "-",
            "throughput",
            lambda d: _num(d["baseline_update_commit_per_second"], ",.0f", "/s"),
        ),
        (
            "ProcessRecommendation p50 / bare grpc.aio RPC p50",
            "<= 2.5 ms / -",
            "grpc_overhead",
            lambda d: (
                f"{_fmt(d['process_recommendation'])} / {_fmt(d['bare_grpc_aio_rpc'])}; x{_num(d['ratio_p50'], '.1f')}"
            ),
        ),
        (
            "RSS after warm-up: generator / bridge / orchestrator / executor",
            "<= 180 / 90 / 90 / 90 MB",
            "memory_and_startup",
            lambda d: (
                " / ".join(_num(d["rss_mb"][k], ".1f") for k in ("generator", "bridge", "orchestrator", "executor"))
                + " MB"
            ),
        ),
        (
            "start-up to SERVING: generator / bridge / orchestrator / executor",
            "<= 1.5 s each",
            "memory_and_startup",
            lambda d: (
                " / ".join(
                    _num(d["startup_seconds"][k], ".2f") for k in ("generator", "bridge", "orchestrator", "executor")
                )
                + " s"
            ),
        ),
    ]
    rows += [
        (
            "backtest with positions, 20 markets x 6 months hourly (median of 3, range)",
            "<= 5 s",
            "backtest",
            lambda d: f"{d['wall']['p50_ms'] / 1000:.2f} s ({d['range_s'][0]}-{d['range_s'][1]} s)",
        ),
        (
            "`cts train` on the 20 markets, 5-minute bars (median of 3, range)",
            "-",
            "training",
            lambda d: f"{d['wall']['p50_ms'] / 1000:.0f} s ({d['range_s'][0]}-{d['range_s'][1]} s)",
        ),
    ]
    for label, target, scenario, render in rows:
        lines.append(f"| {label} | {target} | {cell(scenario, 'sqlite', render)} | {cell(scenario, 'mysql', render)} |")
    return "\n".join(lines)


def write_readme_table(results: dict[str, Any], readme: Path) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{markdown(results)}\n{END}{tail}")
