"""Turn a results document (:func:`bench.runner.run_benchmark`) into derived numbers, target
verdicts, a Markdown report, and the files ``bench/results/<date>-<customers>.{json,md}``.

Derived numbers per run (sums over the (segment, destination) pairs):

``ours_s``: segment + audience + diff (the SQL side of a sync, send excluded);
``floor_s``: the issue's raw DuckDB floor: ``sha256`` over the email column + both anti-joins
of the key sets (no segment, no consent);
``floor_same_s``: the same-work floor: one query from the source tables to the same add and
remove key sets (segment, consent filter, key rules, anti-joins; :mod:`bench.end_to_end`);
``naive_s``: the issue's naive baseline, from our audience: hashing (pull + ``hashlib``) + diff
(state pull + sets);
``naive_e2e_s``: the naive tool end to end from the source tables: query + pull + hash + diff;
``naive_speedup`` / ``naive_e2e_speedup``: that naive's seconds / ``ours_s``;
``hashing_ratio``: our audience stage / the naive hashing (ours also applies the consent rules);
``diff_ratio``: our diff / the naive diff (ours also exports Parquet and folds the journal).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

STAGES: tuple[str, ...] = ("segment", "audience", "diff", "send")
RSS_LIMIT_MIB = 500.0
RSS_GROWTH_LIMIT = 1.5
FLOOR_LIMIT = 2.0
NAIVE_SPEEDUP = 10.0
MOCK_BOUND = 1.5


def _pairs(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(run["pairs"].items())


def _floor_sum(pairs: list[dict[str, Any]], key: str) -> float | None:
    """Seconds of a DuckDB floor over the pairs; None when not run (a PostgreSQL run)."""
    if not all(key in p for p in pairs):
        return None
    return sum(p[key]["seconds"] for p in pairs)


def backend(results: dict[str, Any]) -> str:
    """``duckdb`` or ``postgres`` (results from before the option are DuckDB's)."""
    return results.get("backend") or "duckdb"


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """Per-run sums and ratios (see module docstring); all times in seconds."""
    pairs = [p for _, p in _pairs(run)]
    ours = sum(p[s]["seconds"] for p in pairs for s in ("segment", "audience", "diff"))
    ours_cpu = sum(p[s].get("cpu_s", 0.0) for p in pairs for s in ("segment", "audience", "diff"))
    floor = _floor_sum(pairs, "floor")
    floor_same = _floor_sum(pairs, "floor_same")
    naive_e2e = sum(p["naive_e2e"]["seconds"] for p in pairs)
    naive_hash = sum(p["naive"]["hashing_s"] for p in pairs)
    naive_diff = sum(p["naive"]["diff_s"] for p in pairs)
    audience = sum(p["audience"]["seconds"] for p in pairs)
    diff = sum(p["diff"]["seconds"] for p in pairs)
    return {
        "ours_s": ours,
        "ours_cpu_s": ours_cpu,
        "floor_s": floor,
        "floor_multiple": ours / floor if floor else None,
        "naive_s": naive_hash + naive_diff,
        "naive_speedup": (naive_hash + naive_diff) / ours if ours else None,
        "floor_same_s": floor_same,
        "floor_same_multiple": ours / floor_same if floor_same else None,
        "naive_e2e_s": naive_e2e,
        "naive_e2e_speedup": naive_e2e / ours if ours else None,
        "hashing_ratio": audience / naive_hash if naive_hash else None,
        "diff_ratio": diff / naive_diff if naive_diff else None,
        "api_calls": sum(p["api_calls"] for p in pairs),
        "min_api_calls": sum(p["min_api_calls"] for p in pairs),
        "calls_at_minimum": all(p["api_calls"] == p["min_api_calls"] for p in pairs),
        "diffs_identical": all(p["diff_check"]["identical"] for p in pairs),
        "diffs_identical_e2e": all(p["diff_check_e2e"]["identical"] for p in pairs),
        "bytes_sent": sum(p["bytes_sent"] for p in pairs),
    }


def peak_rss_mib(results: dict[str, Any]) -> float:
    """The highest per-stage peak RSS over every run (MiB)."""
    peaks = [
        p[s]["peak_rss_mib"]
        for run in results["runs"]
        for _, p in _pairs(run)
        for s in STAGES
        if p[s]["peak_rss_mib"]
    ]
    peaks += [p["sync_peak_rss_mib"] for run in results["runs"] for _, p in _pairs(run)]
    return max(peaks)


def mock_bound(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Full sync, per pair: end-to-end seconds (segment + audience + diff + send) and the
    seconds the mock alone needs for the same rows at its probed rate; ``ratio`` = e2e /
    mock-alone, ``send_ratio`` = send stage / mock-alone."""
    full = next(r for r in results["runs"] if r["name"] == "full")
    probe = results["mock_probe"]
    rows = []
    for seg, p in _pairs(full):
        rate = probe[p["platform"]]["rows_per_s"]
        sent = p["send"]["rows"]
        alone = sent / rate if rate else 0.0
        e2e = sum(p[s]["seconds"] for s in STAGES)
        rows.append(
            {
                "pair": seg,
                "platform": p["platform"],
                "rows": sent,
                "end_to_end_s": e2e,
                "send_s": p["send"]["seconds"],
                "mock_alone_s": alone,
                "ratio": e2e / alone if alone else None,
                "send_ratio": p["send"]["seconds"] / alone if alone else None,
            }
        )
    return rows


def _target(name: str, goal: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "met": met}


def _speed_targets(inc: dict[str, Any]) -> list[dict[str, Any]]:
    """The incremental run against both floors and both naives (the issue's definitions
    first, then the like-for-like readings)."""
    ours = inc["ours_s"]
    floors = [
        ("DuckDB floor (issue: sha256 of the email column + anti-joins)", "floor"),
        ("same-work DuckDB floor (segment + consent + keys + anti-joins)", "floor_same"),
    ]
    out = [
        _target(
            f"incremental segment+audience+diff vs {label}",
            f"<= {FLOOR_LIMIT:g}x",
            f"{_ratio(inc[f'{key}_multiple'], 1)}x ({ours:.2f} s / {inc[f'{key}_s']:.2f} s)",
            inc[f"{key}_multiple"] is not None and inc[f"{key}_multiple"] <= FLOOR_LIMIT,
        )
        for label, key in floors
        if inc[f"{key}_s"] is not None  # DuckDB's own SQL: not run on PostgreSQL
    ]
    naives = [
        ("naive baseline from our audience (issue's)", "naive"),
        ("naive baseline end to end (segment + consent + hashlib + sets)", "naive_e2e"),
    ]
    out += [
        _target(
            f"incremental segment+audience+diff vs {label}",
            f">= {NAIVE_SPEEDUP:g}x faster",
            f"{_ratio(inc[f'{key}_speedup'], 1)}x ({inc[f'{key}_s']:.2f} s / {ours:.2f} s)",
            inc[f"{key}_speedup"] is not None and inc[f"{key}_speedup"] >= NAIVE_SPEEDUP,
        )
        for label, key in naives
    ]
    return out


def targets(results: dict[str, Any], smaller: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's targets with verdicts. ``smaller``: a results document at a smaller scale
    (for RSS growth), or None (growth then unknown, ``met`` None)."""
    summaries = {r["name"]: run_summary(r) for r in results["runs"]}
    inc = summaries["incremental"]
    out = [
        *_speed_targets(inc),
        _target(
            "API calls equal the minimum, every run",
            "calls == minimum",
            ", ".join(f"{n}: {s['api_calls']}/{s['min_api_calls']}" for n, s in summaries.items()),
            all(s["calls_at_minimum"] for s in summaries.values()),
        ),
        _target(
            "no-change run makes no call",
            "0 calls",
            str(summaries["no_change"]["api_calls"]),
            summaries["no_change"]["api_calls"] == 0,
        ),
        _target(
            "our diff equals the naive diff (from our audience), every run",
            "identical",
            ", ".join(f"{n}: {s['diffs_identical']}" for n, s in summaries.items()),
            all(s["diffs_identical"] for s in summaries.values()),
        ),
        _target(
            "our diff equals the naive diff (end to end), every run",
            "identical",
            ", ".join(f"{n}: {s['diffs_identical_e2e']}" for n, s in summaries.items()),
            all(s["diffs_identical_e2e"] for s in summaries.values()),
        ),
    ]
    peak = peak_rss_mib(results)
    out.append(
        _target(
            "peak RSS of any stage",
            f"< {RSS_LIMIT_MIB:g} MiB",
            f"{peak:.0f} MiB",
            peak < RSS_LIMIT_MIB,
        )
    )
    if smaller is not None:
        small = peak_rss_mib(smaller)
        growth = peak / small
        measured = f"{growth:.2f}x ({small:.0f} MiB at {smaller['customers']:,} -> {peak:.0f} MiB)"
        out.append(
            _target(
                "peak RSS growth from the smaller scale",
                f"< {RSS_GROWTH_LIMIT:g}x",
                measured,
                growth < RSS_GROWTH_LIMIT,
            )
        )
    bound = mock_bound(results)
    for row in bound:
        out.append(
            _target(
                f"full sync end to end vs mock alone ({row['platform']})",
                f"<= {MOCK_BOUND:g}x the mock alone",
                f"{row['ratio']:.2f}x ({row['end_to_end_s']:.1f} s vs {row['mock_alone_s']:.1f} s)",
                row["ratio"] is not None and row["ratio"] <= MOCK_BOUND,
            )
        )
    for row in bound:
        out.append(
            _target(
                f"full sync send stage alone vs mock alone ({row['platform']})",
                f"<= {MOCK_BOUND:g}x the mock alone",
                f"{_ratio(row['send_ratio'])}x ({row['send_s']:.1f} s vs "
                f"{row['mock_alone_s']:.1f} s)",
                row["send_ratio"] is not None and row["send_ratio"] <= MOCK_BOUND,
            )
        )
    return out


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _stage_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| run | segment -> destination | stage | seconds | CPU s | rows | rows/s | peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        for seg, p in _pairs(run):
            for stage in STAGES:
                s = p[stage]
                lines.append(
                    f"| {run['name']} | {seg} -> {p['platform']} | {stage} | {s['seconds']:.3f} "
                    f"| {s.get('cpu_s', 0):.2f} | {s['rows']:,} | {_fmt(s['rows_per_s'])} "
                    f"| {s['peak_rss_mib']:.0f} |"
                )
    return lines


def _sync_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| run | pair | adds | removes | updates | unchanged | API calls | minimum "
        "| engine's min_api_calls | bytes sent | diff = naive | diff = naive end to end |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in results["runs"]:
        for seg, p in _pairs(run):
            r = p["report"]
            lines.append(
                f"| {run['name']} | {seg} -> {p['platform']} | {r['adds']:,} | {r['removes']:,} "
                f"| {r['updates']:,} | {r['unchanged']:,} | {p['api_calls']:,} "
                f"| {p['min_api_calls']:,} | {p['engine_min_api_calls']:,} "
                f"| {p['bytes_sent']:,} | {p['diff_check']['identical']} "
                f"| {p['diff_check_e2e']['identical']} |"
            )
    return lines


def _ratio(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _compare_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| run | ours: segment+audience+diff s | issue floor s | ours / issue floor "
        "| same-work floor s | ours / same-work floor | naive from our audience s "
        "| naive / ours | naive end to end s | naive e2e / ours "
        "| audience / naive hashing | diff / naive diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        s = run_summary(run)
        lines.append(
            f"| {run['name']} | {s['ours_s']:.2f} | {_ratio(s['floor_s'])} "
            f"| {_ratio(s['floor_multiple'], 1)} | {_ratio(s['floor_same_s'])} "
            f"| {_ratio(s['floor_same_multiple'], 1)} | {s['naive_s']:.2f} "
            f"| {_ratio(s['naive_speedup'], 1)} | {s['naive_e2e_s']:.2f} "
            f"| {_ratio(s['naive_e2e_speedup'], 1)} | {_ratio(s['hashing_ratio'])} "
            f"| {_ratio(s['diff_ratio'])} |"
        )
    return lines


def _detail_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| run | pair | naive pull s | naive hashlib s | naive diff s | floor sha256 s "
        "| our key expression s | floor anti-joins s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        for seg, p in _pairs(run):
            n, f = p["naive"], p.get("floor", {})
            lines.append(
                f"| {run['name']} | {seg} | {n['pull_s']:.3f} | {n['hash_s']:.3f} "
                f"| {n['diff_s']:.3f} | {_ratio(f.get('sha256_s'), 3)} "
                f"| {_ratio(f.get('our_key_expr_s'), 3)} | {_ratio(f.get('antijoin_s'), 3)} |"
            )
    return lines


def _end_to_end_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| run | pair | model rows | target | naive e2e query s | pull s | hashlib s | diff s "
        "| total s | same-work floor s | floor adds / removes | ours adds / removes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        for seg, p in _pairs(run):
            n, f, r = p["naive_e2e"], p.get("floor_same"), p["report"]
            floor = (
                "n/a | n/a"
                if f is None
                else (f"{f['seconds']:.3f} | {f['adds']:,} / {f['removes']:,}")
            )
            lines.append(
                f"| {run['name']} | {seg} | {n['model_rows']:,} | {n['rows']:,} "
                f"| {n['query_s']:.3f} | {n['pull_s']:.3f} | {n['hash_s']:.3f} "
                f"| {n['diff_s']:.3f} | {n['seconds']:.3f} | {floor} "
                f"| {r['adds']:,} / {r['removes']:,} |"
            )
    return lines


def _mock_lines(results: dict[str, Any]) -> list[str]:
    probe = results["mock_probe"]
    lines = [
        "| platform | batches | rows | seconds | rows/s (mock alone) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("meta", "mailchimp"):
        m = probe[name]
        lines.append(
            f"| {name} | {m['batches']} | {m['rows']:,} | {m['seconds']:.2f} "
            f"| {m['rows_per_s']:,.0f} |"
        )
    lines += [
        "",
        "| full sync pair | rows sent | end to end s | send s | mock alone s | e2e / mock "
        "| send / mock |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in mock_bound(results):
        lines.append(
            f"| {row['pair']} -> {row['platform']} | {row['rows']:,} | {row['end_to_end_s']:.2f} "
            f"| {row['send_s']:.2f} | {row['mock_alone_s']:.2f} | {_ratio(row['ratio'])} "
            f"| {_ratio(row['send_ratio'])} |"
        )
    return lines


def _target_lines(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]
    for t in verdicts:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {met} |")
    return lines


def memory_growths(results: dict[str, Any]) -> list[str]:
    """Every time a stage ran out of DuckDB memory and retried with a doubled limit, as
    ``"<run>/<segment> <stage>: <warning>"`` (empty when every stage fit its limit)."""
    out = []
    for run in results["runs"]:
        for seg, p in _pairs(run):
            for stage, grown in (
                ("segment", p["segment"].get("memory_growths", [])),
                ("audience", p["audience"].get("memory_growths", [])),
                ("sync", p.get("sync_memory_growths", [])),
            ):
                out += [f"{run['name']}/{seg} {stage}: {message}" for message in grown]
    return out


def _backend_line(results: dict[str, Any]) -> str:
    """Which warehouse the stages ran on (and, on PostgreSQL, the copy's cost)."""
    loaded = results.get("postgres")
    if backend(results) != "postgres" or not loaded:
        return "Warehouse backend: DuckDB (the generated file)."
    rows = sum(loaded["rows"].values())
    reload = (
        f", changed tables reloaded in {loaded['reload_s']:.1f} s" if "reload_s" in loaded else ""
    )
    return (
        f"Warehouse backend: PostgreSQL {loaded['server_version']} (a local server on this "
        f"machine, untuned, sharing its cores), holding a copy of the generated file "
        f"({rows:,} rows copied in {loaded['load_s']:.1f} s{reload}; not in any timing). "
        "The naive baselines run on the same server; the DuckDB floors are DuckDB's own "
        "SQL and are not run."
    )


def _memory_line(results: dict[str, Any]) -> str:
    limit = results["machine"].get("duckdb_memory_limit", "not recorded")
    grown = memory_growths(results)
    where = "; ".join(grown) if grown else "no stage ran out of it"
    return f"DuckDB `memory_limit` per connection: {limit}; {where}."


def markdown(results: dict[str, Any], verdicts: list[dict[str, Any]]) -> str:
    """The Markdown report of one results document."""
    w, m, c = results["warehouse"], results["machine"], results["changes"]
    head = [
        f"# Benchmark: {results['customers']:,} customers ({results['started_at']})",
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, DuckDB {m['duckdb']}. "
        f"Warehouse: {w['customers']:,} customers, {w['events']:,} events, "
        f"{w['consents']:,} consents, {w['privacy_requests']:,} privacy requests, "
        f"generated in {w['seconds']:.1f} s. Changes before the incremental run: "
        f"{c['left']:,} customers left the segment countries, {c['joined']:,} joined, "
        f"{c['withdrew']:,} withdrew consent. Whole benchmark: {results['wall_s']:.0f} s.",
        "",
        _backend_line(results),
        "",
        _memory_line(results),
        "",
    ]
    sections = [
        ("Targets", _target_lines(verdicts)),
        ("Stages (each in a fresh process; peak RSS includes imports)", _stage_table(results)),
        ("Syncs", _sync_table(results)),
        ("Against the naive baseline and the DuckDB floor", _compare_table(results)),
        ("Baseline and floor details", _detail_table(results)),
        ("Naive end to end and same-work floor details", _end_to_end_table(results)),
        ("Mock destinations alone", _mock_lines(results)),
    ]
    body = []
    for title, lines in sections:
        body += [f"## {title}", "", *lines, ""]
    return "\n".join(head + body)


def write_results(
    results: dict[str, Any], out_dir: Path, smaller: dict[str, Any] | None = None
) -> tuple[Path, Path, str]:
    """Add ``summary`` and ``targets`` to ``results`` and write ``<date>-<customers>.json`` and
    ``.md`` into ``out_dir``. Returns both paths and the Markdown text."""
    verdicts = targets(results, smaller)
    results["summary"] = {r["name"]: run_summary(r) for r in results["runs"]}
    results["targets"] = verdicts
    suffix = "-postgres" if backend(results) == "postgres" else ""
    stem = f"{date.today().isoformat()}-{results['customers']}{suffix}"
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    text = markdown(results, verdicts)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(text)
    return json_path, md_path, text


def _documents(out_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The benchmark results documents in ``out_dir`` run on backend ``kind``."""
    found = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "runs" in doc and backend(doc) == kind:
            found.append(doc)
    return found


def latest_smaller(out_dir: Path, customers: int, kind: str = "duckdb") -> dict[str, Any] | None:
    """The newest results document in ``out_dir`` with fewer customers on backend ``kind``,
    or None."""
    found = [d for d in _documents(out_dir, kind) if d.get("customers", customers) < customers]
    return max(found, key=lambda d: d.get("started_at", "")) if found else None


def latest_at(out_dir: Path, customers: int, kind: str) -> dict[str, Any] | None:
    """The newest results document in ``out_dir`` at ``customers`` on backend ``kind``."""
    found = [d for d in _documents(out_dir, kind) if d.get("customers") == customers]
    return max(found, key=lambda d: d.get("started_at", "")) if found else None


__all__ = [
    "backend",
    "latest_at",
    "latest_smaller",
    "markdown",
    "memory_growths",
    "run_summary",
    "targets",
    "write_results",
]
