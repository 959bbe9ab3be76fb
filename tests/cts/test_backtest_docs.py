"""The README quotes one set of backtest numbers: those of docs/backtest_summary.md, the run that drew
docs/backtest_equity.png."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path("docs")
README = Path("README.md")
# Numbers as the report writes them: money and percentages with two decimals, or one (win rate, exposure).
NUMBER = re.compile(r"[-+]?\$[\d,]+\.\d\d|[-+]?\d[\d,]*\.\d\d? %")


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _result_rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 and cells[0] not in ("result", "---"):
            rows[cells[0]] = cells[1]
    return rows


def test_readme_quotes_the_numbers_of_the_summary_in_docs() -> None:
    summary = (DOCS / "backtest_summary.md").read_text()
    assert (DOCS / "backtest_equity.png").read_bytes()[:4] == b"\x89PNG"
    readme = README.read_text()
    backtest = _section(readme, "Backtest")
    quoted = _result_rows(backtest)
    assert quoted, "the Backtest section has no result table"
    summary_rows = _result_rows(summary.split("## Per symbol")[0])
    for label, value in quoted.items():
        assert summary_rows.get(label) == value, label
    numbers = NUMBER.findall(backtest)
    assert numbers
    for number in numbers:
        assert number.lstrip("+") in summary, number
    # The model's evaluation on the same candles quotes the same backtest (its row in "The model").
    model = _section(readme, "The model").replace("\u2212", "-")
    (row,) = [line for line in model.splitlines() if line.startswith("| backtest")]
    assert f"{summary_rows['total return']}, max drawdown {summary_rows['max drawdown']}" in row
