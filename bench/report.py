"""Render bench/results.json as a Markdown table between the BENCH markers of README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- BENCH:BEGIN -->"
END = "<!-- BENCH:END -->"


def _fmt(summary: dict[str, Any] | None, key: str = "p50_ms") -> str:
    if not summary or key not in summary:
        return "-"
    return f"{summary[key]:.1f} ms"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Measured {results['when']} with `{results['command']}` on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, Python {m['python']}.",
        "",
        "| scenario | target | SQLite | MariaDB |",
        "|---|---|---|---|",
    ]
    s = results["scenarios"]

    def cell(scenario: str, engine: str, render: Any) -> str:
        data = s.get(scenario, {}).get(engine)
        if data is None:
            return "not run"
        if "error" in data:
            return f"error: {data['error'][:60]}"
        try:
            return str(render(data))
        except (KeyError, TypeError, ZeroDivisionError):
            return "-"

    rows = [
        (
            "Generate, 20 symbols x 500 candles (p50)",
            "<= 25 ms",
            "generation",
            lambda d: _fmt(d["generate_20_symbols"]),
        ),
        ("Generate, 200 symbols (p50)", "<= 150 ms", "generation", lambda d: _fmt(d.get("generate_200_symbols"))),
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
            "<= 15 / 50 ms",
            "signal_to_order",
            lambda d: f"{_fmt(d['latency'])} / {_fmt(d['latency'], 'p99_ms')}",
        ),
        ("recommendations executed end to end", ">= 1,000/s", "throughput", lambda d: f"{d['per_second']:,.0f}/s"),
        (
            "baseline: single-row UPDATE+COMMIT",
            "-",
            "throughput",
            lambda d: f"{d['baseline_update_commit_per_second']:,.0f}/s",
        ),
        (
            "ProcessRecommendation p50 / bare grpc.aio RPC p50",
            "report ratio",
            "grpc_overhead",
            lambda d: f"{_fmt(d['process_recommendation'])} / {_fmt(d['bare_grpc_aio_rpc'])} (x{d['ratio_p50']})",
        ),
        (
            "RSS after warm-up: generator / bridge / orchestrator / executor",
            "<= 250 / 120 / 120 / 120 MB",
            "memory_and_startup",
            lambda d: (
                " / ".join(str(d["rss_mb"][k]) for k in ("generator", "bridge", "orchestrator", "executor")) + " MB"
            ),
        ),
        (
            "start-up to SERVING: generator / bridge / orchestrator / executor",
            "<= 3 s each",
            "memory_and_startup",
            lambda d: (
                " / ".join(str(d["startup_seconds"][k]) for k in ("generator", "bridge", "orchestrator", "executor"))
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
