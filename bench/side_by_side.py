"""DuckDB and PostgreSQL side by side: two results documents of ``python -m bench run`` at the
same scale, one per backend (``--warehouse duckdb`` / ``--warehouse postgres``), in one table.

Per run and stage (sums over the bench's two (segment, destination) pairs): seconds and rows
per second on each backend and PostgreSQL / DuckDB; then per backend the API calls against
the minimum, the highest stage peak RSS, the naive baselines (run on the same backend) over
ours, and whether our diff equalled both naive diffs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import STAGES, peak_rss_mib, run_summary


def _stage_sums(results: dict[str, Any]) -> dict[tuple[str, str], tuple[float, int]]:
    """(run, stage) -> (seconds, rows) summed over the pairs."""
    out: dict[tuple[str, str], tuple[float, int]] = {}
    for run in results["runs"]:
        for stage in STAGES:
            parts = [p[stage] for p in run["pairs"].values()]
            out[run["name"], stage] = (
                sum(s["seconds"] for s in parts),
                sum(s["rows"] for s in parts),
            )
    return out


def _rate(seconds: float, rows: int) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 and rows else "-"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def side_by_side(duck: dict[str, Any], pg: dict[str, Any]) -> str:
    """The Markdown comparison of ``duck`` and ``pg`` (results documents, same customers).

    Raises:
        ValueError: the documents are not at the same scale.
    """
    if duck["customers"] != pg["customers"]:
        raise ValueError(f"different scales: {duck['customers']} and {pg['customers']}")
    lines = [
        f"# DuckDB and PostgreSQL side by side: {duck['customers']:,} customers",
        "",
        f"DuckDB run started {duck['started_at']}; PostgreSQL run started {pg['started_at']} "
        f"(PostgreSQL {pg['postgres']['server_version']}, a local untuned server on the same "
        "cores). Seconds are wall time of each stage's work, summed over both pairs.",
        "",
        "| run | stage | DuckDB s | DuckDB rows/s | PostgreSQL s | PostgreSQL rows/s "
        "| PostgreSQL / DuckDB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    d_sums, p_sums = _stage_sums(duck), _stage_sums(pg)
    for (run, stage), (d_s, d_rows) in d_sums.items():
        p_s, p_rows = p_sums[run, stage]
        ratio = f"{p_s / d_s:.1f}x" if d_s > 0 else "-"
        lines.append(
            f"| {run} | {stage} | {d_s:.2f} | {_rate(d_s, d_rows)} | {p_s:.2f} "
            f"| {_rate(p_s, p_rows)} | {ratio} |"
        )
    lines += [
        "",
        "| per run | backend | API calls / minimum | naive from our audience / ours "
        "| naive end to end / ours | our diff = both naive diffs |",
        "|---|---|---|---:|---:|---|",
    ]
    for name in [run["name"] for run in duck["runs"]]:
        for label, doc in (("DuckDB", duck), ("PostgreSQL", pg)):
            s = run_summary(next(r for r in doc["runs"] if r["name"] == name))
            same = s["diffs_identical"] and s["diffs_identical_e2e"]
            lines.append(
                f"| {name} | {label} | {s['api_calls']:,} / {s['min_api_calls']:,} "
                f"| {_times(s['naive_speedup'])} | {_times(s['naive_e2e_speedup'])} "
                f"| {'yes' if same else '**no**'} |"
            )
    lines += [
        "",
        f"Highest stage peak RSS: DuckDB {peak_rss_mib(duck):.0f} MiB, PostgreSQL "
        f"{peak_rss_mib(pg):.0f} MiB (the client process; the server's memory is not counted).",
        "",
    ]
    return "\n".join(lines)


def write_side_by_side(duck: dict[str, Any], pg: dict[str, Any], out_dir: Path) -> Path:
    """Write ``<date of the PostgreSQL run>-<customers>-side-by-side.md`` into ``out_dir``."""
    path = out_dir / f"{pg['started_at'][:10]}-{pg['customers']}-side-by-side.md"
    path.write_text(side_by_side(duck, pg), encoding="utf-8")
    return path


__all__ = ["side_by_side", "write_side_by_side"]
