"""The benchmark's machinery at a tiny scale (2,000 customers): correctness, not timing.

Stages run in-process here (fast); one test runs a stage through the real subprocess path.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from bench import measure, stages
from bench.generator import apply_changes, generate_warehouse
from bench.report import markdown, memory_growths, run_summary, targets, write_results
from bench.runner import compare_keys, run_benchmark
from bench.scenario import AS_OF, DEFAULT_SEED
from bench.stages import run_stage_inline
from orchestrator.warehouse.memory import with_memory_growth

CUSTOMERS = 2_000


def _digest(path: Path) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            table: con.execute(
                f"SELECT md5(string_agg(t::VARCHAR, '|' ORDER BY t::VARCHAR)) FROM {table} t"
            ).fetchone()[0]
            for table in ("customers", "events", "consents", "privacy_requests")
        }
    finally:
        con.close()


def test_generator_is_deterministic_and_changes_move_about_one_percent(tmp_path: Path) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    stats = generate_warehouse(a, customers=CUSTOMERS, seed=DEFAULT_SEED, as_of=AS_OF)
    generate_warehouse(b, customers=CUSTOMERS, seed=DEFAULT_SEED, as_of=AS_OF)
    assert _digest(a) == _digest(b)
    assert stats.customers == CUSTOMERS
    assert 8 * CUSTOMERS <= stats.events <= 12 * CUSTOMERS  # about ten per customer
    con = duckdb.connect(str(a), read_only=True)
    purposes = con.execute("SELECT DISTINCT purpose FROM consents ORDER BY 1").fetchall()
    con.close()
    assert purposes == [("ad_targeting",), ("email_marketing",)]
    changes = apply_changes(a, seed=DEFAULT_SEED, as_of=AS_OF)
    assert 0 < changes.left < CUSTOMERS * 0.01 and 0 < changes.joined < CUSTOMERS * 0.01
    assert 0 < changes.withdrew < changes.left
    with pytest.raises(FileExistsError):
        generate_warehouse(a, customers=CUSTOMERS, seed=DEFAULT_SEED, as_of=AS_OF)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One whole benchmark at 2,000 customers, every stage in-process."""
    work = tmp_path_factory.mktemp("bench")
    return run_benchmark(
        CUSTOMERS, work, seed=DEFAULT_SEED, log=lambda _: None, run_stage=run_stage_inline
    )


def test_our_diff_equals_both_naive_diffs_in_every_run(results: dict) -> None:
    assert [run["name"] for run in results["runs"]] == ["full", "incremental", "no_change"]
    for run in results["runs"]:
        for pair in run["pairs"].values():
            report = pair["report"]
            ours = {"add": report["adds"], "remove": report["removes"], "update": report["updates"]}
            for check, naive in (("diff_check", "naive"), ("diff_check_e2e", "naive_e2e")):
                assert pair[check]["identical"], (run["name"], check, pair[check])
                assert pair[naive]["counts"] == ours, (run["name"], naive)
            # the end-to-end naive starts from the source tables, not from our audience
            assert pair["naive_e2e"]["rows"] == pair["audience"]["members"]
            assert pair["naive_e2e"]["model_rows"] >= pair["naive_e2e"]["rows"]
            assert {"query_s", "pull_s", "hash_s", "diff_s"} <= set(pair["naive_e2e"])
    full, incremental, _ = (run_summary(run) for run in results["runs"])
    assert all(p["report"]["adds"] > 0 for p in results["runs"][0]["pairs"].values())
    incremental_pairs = results["runs"][1]["pairs"].values()
    assert all(p["report"]["adds"] > 0 and p["report"]["removes"] > 0 for p in incremental_pairs)
    assert full["diffs_identical"] and incremental["diffs_identical"]
    assert full["diffs_identical_e2e"] and incremental["diffs_identical_e2e"]


def test_the_same_work_floor_finds_our_adds_and_removes(results: dict) -> None:
    for run in results["runs"]:
        for pair in run["pairs"].values():
            floor, report = pair["floor_same"], pair["report"]
            assert floor["target_keys"] == pair["audience"]["members"], run["name"]
            assert (floor["adds"], floor["removes"]) == (report["adds"], report["removes"])
            assert floor["seconds"] > 0
    for run in results["runs"]:
        s = run_summary(run)
        assert s["floor_same_s"] > 0 and s["floor_same_multiple"] == s["ours_s"] / s["floor_same_s"]
        assert s["naive_e2e_speedup"] == s["naive_e2e_s"] / s["ours_s"]


def test_calls_match_the_minimum_and_the_no_change_run_sends_nothing(results: dict) -> None:
    summaries = {run["name"]: run_summary(run) for run in results["runs"]}
    assert all(s["calls_at_minimum"] for s in summaries.values()), summaries
    assert summaries["no_change"]["api_calls"] == 0
    assert summaries["no_change"]["bytes_sent"] == 0
    assert summaries["full"]["bytes_sent"] > 0
    # Mailchimp archives one member per call: the bench's own minimum counts one call per
    # archived member, and the engine's min_api_calls now agrees with it in every run.
    mailchimp = results["runs"][1]["pairs"]["bench_newsletter"]
    left = mailchimp["report"]["removes_by_reason"]["left_segment"]
    assert mailchimp["min_api_calls"] >= left > 0
    for run in results["runs"]:
        for pair in run["pairs"].values():
            assert pair["engine_min_api_calls"] == pair["min_api_calls"], (run["name"], pair)


def test_report_has_every_field_and_writes_both_files(results: dict, tmp_path: Path) -> None:
    json_path, md_path, text = write_results(dict(results), tmp_path)
    doc = json.loads(json_path.read_text())
    for key in ("customers", "machine", "warehouse", "changes", "mock_probe", "runs", "targets"):
        assert key in doc
    for run in doc["runs"]:
        for pair in run["pairs"].values():
            for stage in ("segment", "audience", "diff", "send"):
                assert {"seconds", "rows", "rows_per_s", "peak_rss_mib"} <= set(pair[stage])
            assert {"api_calls", "min_api_calls", "bytes_sent", "naive", "floor"} <= set(pair)
            assert pair["floor"]["sha256_s"] > 0 and pair["floor"]["antijoin_s"] > 0
    assert doc["mock_probe"]["meta"]["rows_per_s"] > 0
    assert doc["mock_probe"]["mailchimp"]["rows_per_s"] > 0
    names = [t["target"] for t in targets(doc, doc)]
    assert len(names) == 14 and any("growth" in n for n in names)
    readings = [n for n in names if n.startswith("incremental segment+audience+diff vs")]
    assert len(readings) == 4  # both floors, both naives
    assert sum("same-work" in n for n in readings) == 1
    assert sum("end to end" in n for n in readings) == 1
    assert sum("send stage alone vs mock alone" in n for n in names) == 2
    assert sum("full sync end to end vs mock alone" in n for n in names) == 2
    assert md_path.read_text() == text == markdown(doc, doc["targets"])
    titles = ("## Targets", "## Stages", "## Syncs", "## Mock destinations alone")
    for title in (*titles, "## Naive end to end and same-work floor details"):
        assert title in text
    assert "@example" not in text and "@example" not in json_path.read_text()


def test_compare_keys_reports_a_difference(tmp_path: Path) -> None:
    ours, naive = tmp_path / "ours", tmp_path / "naive"
    ours.mkdir()
    naive.mkdir()
    (ours / "add.keys").write_text("a\nb\n")
    (naive / "add.keys").write_text("a\nc\n")
    check = compare_keys(ours, naive)
    assert not check["identical"]
    assert check["add"] == {"ours": 2, "naive": 2, "only_ours": 1, "only_naive": 1}
    assert check["remove"] == {"ours": 0, "naive": 0, "only_ours": 0, "only_naive": 0}


def test_a_stage_runs_in_its_own_process(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    generate_warehouse(warehouse, customers=CUSTOMERS, seed=DEFAULT_SEED, as_of=AS_OF)
    job = {"warehouse": str(warehouse), "as_of": AS_OF.isoformat(), "segment": "bench_retarget"}
    result = measure.run_stage("segment", job, tmp_path / "jobs", "seg")
    assert result["rows"] == CUSTOMERS and 0 < result["members"] < CUSTOMERS
    assert result["peak_rss_mib"] >= result["import_rss_mib"] > 0
    with pytest.raises(measure.StageError, match="KeyError"):
        measure.run_stage("no_such_stage", job, tmp_path / "jobs", "bad")


def test_report_names_the_memory_limit_and_no_growth_at_small_scale(results: dict) -> None:
    text = markdown(results, targets(results, None))
    assert f"`memory_limit` per connection: {results['machine']['duckdb_memory_limit']}" in text
    assert memory_growths(results) == [] and "no stage ran out of it" in text


def test_a_stage_that_ran_out_of_duckdb_memory_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oom_stage(job: dict) -> dict:
        con = duckdb.connect()
        con.execute("SET memory_limit = '4MB'")
        query = "SELECT len(list(i)) FROM range(3000000) AS t(i)"
        (n,) = with_memory_growth(con, lambda: con.execute(query).fetchone(), what="oom test")
        return {"seconds": 0.0, "rows": n, "rows_per_s": 0.0, "peak_rss_mib": 0.0}

    monkeypatch.setitem(stages.STAGES, "oom_once", oom_stage)
    result = run_stage_inline("oom_once", {}, tmp_path, "oom")
    assert result["rows"] == 3_000_000
    assert result["memory_growths"] and all(
        "oom test: DuckDB ran out of memory" in m for m in result["memory_growths"]
    )
    pair = {"segment": {"memory_growths": result["memory_growths"]}, "audience": {}}
    doc = {"runs": [{"name": "full", "pairs": {"s": pair}}], "machine": {}}
    assert memory_growths(doc)[0].startswith("full/s segment: oom test")
