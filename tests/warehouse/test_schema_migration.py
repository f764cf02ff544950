"""A warehouse created before 2026-12-02 loses the audience's primary key, and nothing else."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from orchestrator.warehouse.schema import create_activation_schema, drop_audience_primary_key

#: ``audience_members`` as warehouses created before 2026-12-02 hold it.
OLD_DDL = """
CREATE SCHEMA activation;
CREATE TABLE activation.audience_members (
    segment VARCHAR NOT NULL, subject_key VARCHAR NOT NULL, google_key VARCHAR NOT NULL,
    customer_id BIGINT NOT NULL, email VARCHAR NOT NULL, legal_basis VARCHAR NOT NULL,
    consent_ref VARCHAR NOT NULL, computed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (segment, subject_key));
"""
ROWS = [
    ("s", "a" * 64, "b" * 64, 1, "one@example.com", "consent", "c-1", datetime(2026, 1, 1)),
    ("s", "c" * 64, "d" * 64, 2, "two@example.org", "consent", "c-2", datetime(2026, 1, 1)),
]


def _constraints(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return sorted(
        con.execute(
            "SELECT constraint_type, constraint_column_names FROM duckdb_constraints() "
            "WHERE schema_name = 'activation' AND table_name = 'audience_members'"
        ).fetchall()
    )


def _old_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute(OLD_DDL)
    con.executemany("INSERT INTO activation.audience_members VALUES (?,?,?,?,?,?,?,?)", ROWS)
    return con


def test_an_old_audience_table_keeps_its_rows_and_not_null_columns(tmp_path: Path) -> None:
    _old_warehouse(tmp_path / "old.duckdb").close()
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    try:
        create_activation_schema(con)  # leaves the key: only the audience step drops it
        assert ("PRIMARY KEY", ["segment", "subject_key"]) in _constraints(con)
        con.begin()
        assert drop_audience_primary_key(con) is True
        con.commit()
        constraints = _constraints(con)
        assert ("PRIMARY KEY", ["segment", "subject_key"]) not in constraints
        assert [c for c in constraints if c[0] == "NOT NULL"] == sorted(
            ("NOT NULL", [column])
            for column in (
                "segment", "subject_key", "google_key", "customer_id",
                "email", "legal_basis", "consent_ref", "computed_at",
            )
        )  # fmt: skip
        rows = con.execute("SELECT * FROM activation.audience_members ORDER BY customer_id")
        assert rows.fetchall() == ROWS
        with pytest.raises(duckdb.ConstraintException):
            con.execute(
                "INSERT INTO activation.audience_members VALUES "
                "('s', 'e', 'f', 3, NULL, 'consent', 'c-3', now())"
            )
        assert drop_audience_primary_key(con) is False  # once only
        assert con.execute("SELECT count(*) FROM activation.audience_members").fetchone() == (2,)
    finally:
        con.close()


def test_a_failed_transaction_leaves_the_old_table_as_it_was(tmp_path: Path) -> None:
    con = _old_warehouse(tmp_path / "old.duckdb")
    try:
        con.begin()
        assert drop_audience_primary_key(con) is True
        con.rollback()  # e.g. the audience step that ran it failed later
        assert ("PRIMARY KEY", ["segment", "subject_key"]) in _constraints(con)
        assert con.execute("SELECT count(*) FROM activation.audience_members").fetchone() == (2,)
    finally:
        con.close()
