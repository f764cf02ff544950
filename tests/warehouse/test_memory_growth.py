"""A step that runs out of DuckDB memory is retried with a larger limit, and gives the same
result as with plenty of memory; past the ceiling the error reaches the caller."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from orchestrator.audience import build_audience
from orchestrator.config import LegalBasis, Purpose
from orchestrator.warehouse.memory import memory_limit_bytes, parse_size, with_memory_growth
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema

AS_OF = datetime(2026, 6, 1, 12, 0)
PURPOSES = {
    "ad_targeting": Purpose(
        description="custom audiences",
        consent_validity_days=395,
        legal_bases=(LegalBasis.CONSENT,),
    )
}
CUSTOMERS = 20_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300MB", 300_000_000),
        ("286.1 MiB", int(286.1 * 2**20)),
        ("4GB", 4_000_000_000),
        ("512KiB", 512 * 1024),
        ("1024", 1024),
    ],
)
def test_parse_size_reads_duckdb_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "12 parsecs", "-"])
def test_parse_size_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size(text)


def _warehouse(path: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), config={"memory_limit": memory_limit})
    create_source_schema(con)
    create_activation_schema(con)
    return con


def _fill(con: duckdb.DuckDBPyConnection) -> None:
    """CUSTOMERS synthetic customers (example.com), every other one with a valid consent."""
    con.execute(
        "INSERT INTO customers (customer_id, email, country, created_at) "
        "SELECT range, 'person' || range || '@example.com', 'FR', ? FROM range(?)",
        [AS_OF - timedelta(days=10), CUSTOMERS],
    )
    con.execute(
        "INSERT INTO consents SELECT 'c' || range, range, 'ad_targeting', 'granted', ?, 'web', "
        "'v1' FROM range(0, ?, 2)",
        [AS_OF - timedelta(days=5), CUSTOMERS],
    )
    con.execute(
        "INSERT INTO activation.segment_members SELECT 'seg', range, ? FROM range(?)",
        [AS_OF, CUSTOMERS],
    )


def _audience(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    build_audience(
        con,
        segment="seg",
        purpose="ad_targeting",
        legal_basis=LegalBasis.CONSENT,
        purposes=PURPOSES,
        as_of=AS_OF,
    )
    return con.execute(
        "SELECT customer_id, subject_key, consent_ref FROM activation.audience_members "
        "ORDER BY customer_id"
    ).fetchall()


def test_an_audience_out_of_memory_is_rebuilt_with_more(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    roomy = _warehouse(tmp_path / "roomy.duckdb", "1GB")
    _fill(roomy)
    expected = _audience(roomy)
    filled = _warehouse(tmp_path / "tight.duckdb", "1GB")
    _fill(filled)
    filled.close()
    tight = duckdb.connect(str(tmp_path / "tight.duckdb"), config={"memory_limit": "2MB"})
    monkeypatch.setenv("ACTIVATION_DUCKDB_MEMORY_MAX", "1GB")
    with caplog.at_level(logging.WARNING, logger="orchestrator.warehouse.memory"):
        assert _audience(tight) == expected
    assert len(expected) == CUSTOMERS // 2
    assert memory_limit_bytes(tight) > parse_size("2MB")
    assert "audience seg: DuckDB ran out of memory" in caplog.text


def test_out_of_memory_at_the_ceiling_reaches_the_caller() -> None:
    con = duckdb.connect(config={"memory_limit": "2MB"})
    limits = []

    def work() -> int:  # needs more than any limit allowed here
        limits.append(memory_limit_bytes(con))
        raise duckdb.OutOfMemoryException("could not allocate block")

    with pytest.raises(duckdb.OutOfMemoryException):
        with_memory_growth(con, work, what="test", environ={"ACTIVATION_DUCKDB_MEMORY_MAX": "7MB"})
    assert len(limits) == 3, "2MB, then 4MB, then the 7MB ceiling"
    assert limits[1] == pytest.approx(2 * limits[0], rel=0.05)  # DuckDB rounds to blocks
    assert limits[2] == pytest.approx(parse_size("7MB"), rel=0.05)


def test_a_ceiling_equal_to_the_limit_fails_at_once_instead_of_retrying_the_same_limit() -> None:
    # DuckDB reports 250MB as 238.4 MiB: a comparison with the ceiling's 250,000,000 bytes
    # once "grew" it to the same 250MB and ran the whole step a second time for nothing
    con = duckdb.connect(config={"memory_limit": "250MB"})
    attempts = []

    def work() -> None:
        attempts.append(memory_limit_bytes(con))
        raise duckdb.OutOfMemoryException("could not allocate block")

    with pytest.raises(duckdb.OutOfMemoryException):
        with_memory_growth(
            con, work, what="test", environ={"ACTIVATION_DUCKDB_MEMORY_MAX": "250MB"}
        )
    assert len(attempts) == 1
