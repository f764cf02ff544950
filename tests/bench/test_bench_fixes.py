"""The two product fixes the benchmark led to behave exactly like the code they replaced.

- ``orchestrator.pseudonymize``: trim only values whose first or last character is one of
  ``TRIM_CHARS`` (DuckDB's ``trim(x, chars)`` is slow); results must equal a plain trim.
(The second, a tail-only repair of the local journal file, went with the file: the journal is a
table of the warehouse now, written in transactions.)
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb

from orchestrator.pseudonymize import (
    TRIM_CHARS,
    normalized_email_sql,
    register_sql_functions,
    subject_key,
    subject_key_sql,
)


def _inputs() -> list[str | None]:
    values: list[str | None] = [None, "", "a@example.com", "A b@example.com", "x"]
    for ch in TRIM_CHARS:
        values += [
            f"{ch}a@example.com",
            f"a@example.com{ch}",
            f"{ch}{ch}A@Example.com{ch}",
            f"a{ch}b@example.com",
            ch,
            ch * 3,
        ]
    values.append(TRIM_CHARS + "B@example.org" + TRIM_CHARS[::-1])
    return values


def test_fast_trim_gives_the_same_keys_as_a_plain_trim() -> None:
    con = duckdb.connect()
    register_sql_functions(con)
    con.execute("CREATE TABLE t (i INTEGER, raw VARCHAR)")
    values = _inputs()
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
    plain = "trim(CAST(raw AS VARCHAR), ?)"
    rows = con.execute(
        f"SELECT i, {normalized_email_sql('raw')}, {subject_key_sql('raw')},"
        f" {plain} FROM t ORDER BY i",
        [TRIM_CHARS],
    ).fetchall()
    con.close()
    for i, normalized, key, trimmed in rows:
        raw = values[i]
        expected_trim = None if raw is None else raw.strip(TRIM_CHARS)
        assert trimmed == expected_trim, repr(raw)
        assert key == subject_key(raw), repr(raw)
        assert (normalized is None) == (key is None), repr(raw)


def test_a_source_of_unicode_blanks_is_unproven_consent() -> None:
    from datetime import datetime

    from bench.scenario import project_config
    from orchestrator.audience import build_audience
    from orchestrator.config import LegalBasis
    from orchestrator.warehouse.schema import create_activation_schema, create_source_schema

    as_of = datetime(2026, 6, 1, 6)
    con = duckdb.connect()
    create_source_schema(con)
    create_activation_schema(con)
    sources = {1: "\u3000\u200b\ufeff", 2: " web form\u00a0", 3: ""}
    for cid, source in sources.items():
        con.execute(
            "INSERT INTO customers VALUES (?, ?, 'FR', 'France', ?, ?)",
            [cid, f"c{cid}@example.com", as_of - timedelta(days=30), as_of - timedelta(days=2)],
        )
        con.execute(
            "INSERT INTO consents VALUES (?, ?, 'ad_targeting', 'granted', ?, ?, 'v1')",
            [f"k{cid}", cid, as_of - timedelta(days=3), source],
        )
        con.execute("INSERT INTO activation.segment_members VALUES ('s', ?, ?)", [cid, as_of])
    stats = build_audience(
        con,
        segment="s",
        purpose="ad_targeting",
        legal_basis=LegalBasis.CONSENT,
        purposes=project_config().purposes,
        as_of=as_of,
    )
    reasons = dict(
        con.execute("SELECT customer_id, reason FROM activation.audience_exclusions").fetchall()
    )
    con.close()
    assert stats.members == 1
    assert reasons == {1: "consent_unproven", 3: "consent_unproven"}


def _tables(con: duckdb.DuckDBPyConnection) -> tuple[list, list]:
    members = con.execute(
        "SELECT * FROM activation.audience_members ORDER BY segment, subject_key"
    ).fetchall()
    excluded = con.execute(
        "SELECT * FROM activation.audience_exclusions ORDER BY segment, customer_id"
    ).fetchall()
    return members, excluded


def test_rebuilding_an_audience_equals_building_it_afresh(tmp_path: Path) -> None:
    """The audience write deletes what is gone and upserts the rest: after changes, the
    tables must equal those of a build into an empty audience."""
    from bench.generator import apply_changes, generate_warehouse
    from bench.scenario import AS_OF, project_config
    from orchestrator.audience import build_audience
    from orchestrator.config import LegalBasis

    path = tmp_path / "w.duckdb"
    generate_warehouse(path, customers=1_500, seed=3, as_of=AS_OF)
    purposes = project_config().purposes

    def build(con: duckdb.DuckDBPyConnection, as_of) -> None:
        con.execute("DELETE FROM activation.segment_members")
        con.execute(
            "INSERT INTO activation.segment_members SELECT 's', customer_id, ? FROM customers"
            " WHERE country IN ('FR', 'DE', 'ES', 'IT', 'NL', 'BE')",
            [as_of],
        )
        build_audience(
            con,
            segment="s",
            purpose="email_marketing",
            legal_basis=LegalBasis.LEGITIMATE_INTEREST,
            purposes=purposes,
            as_of=as_of,
        )

    con = duckdb.connect(str(path))
    build(con, AS_OF - timedelta(days=1))
    before = _tables(con)
    con.execute("UPDATE customers SET email = 'moved' || email WHERE customer_id % 97 = 0")
    con.close()
    apply_changes(path, seed=3, as_of=AS_OF)
    con = duckdb.connect(str(path))
    build(con, AS_OF)
    rebuilt = _tables(con)
    con.execute("DELETE FROM activation.audience_members")
    con.execute("DELETE FROM activation.audience_exclusions")
    build(con, AS_OF)
    fresh = _tables(con)
    con.close()
    assert rebuilt == fresh
    assert rebuilt != before  # the changes did change the audience
    assert {row[-1] for row in rebuilt[0] + rebuilt[1]} == {AS_OF}
