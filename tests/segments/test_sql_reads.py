"""What a ``sql:`` segment reads is what its parsed query reads (case P4): whole-row
references read every column, the rule on identifier columns applies to them, and the
register lists the categories really read. Through ``activation validate`` and ``activation
register``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.config import load_project_config
from orchestrator.privacy.register import render_register_markdown
from orchestrator.segments.loader import load_segments
from orchestrator.segments.sql_reads import SqlSandbox, columns_read
from orchestrator.settings import Settings
from orchestrator.warehouse.schema import SOURCE_COLUMNS

CASE = (
    "SELECT customer_id FROM activation.src_customers AS c"
    " WHERE CAST(c AS VARCHAR) ILIKE '%@gmail.com%'"
)
WHOLE_ROW = [
    CASE,
    "SELECT customer_id FROM (SELECT c.* FROM activation.src_customers AS c) AS s"
    " WHERE s::VARCHAR LIKE '%@%'",
    "SELECT customer_id FROM activation.src_customers"
    " WHERE COLUMNS(*)::VARCHAR ILIKE '%@gmail.com%'",
    "SELECT customer_id FROM (SELECT * FROM activation.src_customers) AS s",
    "WITH p AS (SELECT customer_id, {'row': c} AS packed FROM activation.src_customers AS c)"
    " SELECT customer_id FROM p WHERE packed::VARCHAR LIKE '%@%'",
    "SELECT customer_id FROM activation.src_customers WHERE src_customers::VARCHAR LIKE '%@%'",
    "SELECT customer_id FROM activation.src_customers WHERE false AND email LIKE '%@gmail.com'",
]


def _segment(sql: str, name: str = "sql_probe") -> str:
    return yaml.safe_dump(
        {
            "name": name,
            "description": "A data engineer's query",
            "owner": "data-team@example.com",
            "purpose": "email_marketing",
            "legal_basis": "consent",
            "retention_days": 30,
            "schedule": "0 6 * * *",
            "sql": sql,
            "destinations": [
                {"destination": "mailchimp", "audience_id": f"{name}01", "mode": "mirror"}
            ],
        },
        sort_keys=False,
    )


def _folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *sqls: str) -> Path:
    folder = tmp_path / "segments"
    folder.mkdir()
    for index, sql in enumerate(sqls):
        (folder / f"probe{index}.yaml").write_text(_segment(sql, f"probe{index}"))
    monkeypatch.setenv("ACTIVATION_SEGMENTS_DIR", str(folder))
    return folder


@pytest.mark.parametrize("sql", WHOLE_ROW)
def test_a_query_reading_the_address_through_a_whole_row_is_refused(
    sql: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path, monkeypatch, sql)
    result = CliRunner().invoke(cli, ["validate", "--format", "json"])
    assert result.exit_code == 1, result.output
    (error,) = json.loads(result.stdout)
    assert error["field"] == "sql" and error["line"] == 8
    assert Path(error["path"]).resolve() == (folder / "probe0.yaml").resolve()
    assert "'email' is not allowed" in error["message"]
    assert "customers.email" in error["message"]


def test_the_register_lists_what_a_query_really_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _folder(
        tmp_path,
        monkeypatch,
        # A whole row of events (no identifier there) and an unqualified country column.
        "SELECT e.customer_id FROM activation.src_events AS e"
        " JOIN activation.src_customers USING (customer_id)"
        " WHERE e::VARCHAR LIKE '%MUG%' AND country = 'FR'",
        # Words in a comment or a string are not columns read.
        "SELECT customer_id FROM activation.src_customers -- signed_up_at, last_interaction_at\n"
        "WHERE country_name = 'signed_up_at'",
    )
    # the per-campaign entries (the record's detail) name what each query reads
    settings = Settings.from_env()
    project = load_project_config(settings.config_path)
    loaded = load_segments(settings.segments_dir, project)
    text = render_register_markdown(project, loaded.specs)
    first, second = text.split("### probe0", 1)[1].split("### probe1")
    for label in (
        "events: description (sales.description, returns.description)",
        "events: stock_code (sales.stock_code, returns.stock_code)",
        "events: unit_price_gbp (sales.unit_price_gbp, returns.unit_price_gbp)",
        "events: value (sales.line_total_gbp, returns.line_total_gbp)",
        "events: order_id (sales.order_no, returns.order_no)",
        "events: sku (web.events.sku)",
        "country",
    ):
        assert f"used to select: {label}" in first
    assert "signed_up_at" not in second and "last_interaction_at" not in second
    assert "used to select: country" in second


def test_columns_read_by_plain_queries_are_only_those_named() -> None:
    with SqlSandbox() as sandbox:
        con = sandbox.connection()
        reads = columns_read(
            con,
            "SELECT customer_id FROM events GROUP BY customer_id"
            " HAVING count(*) FILTER (WHERE event_type = 'refund') = 0",
        )
        assert reads == {"events.customer_id", "events.event_type"}
        everything = columns_read(con, "SELECT customer_id FROM customers c WHERE c::VARCHAR > ''")
        assert everything == {f"customers.{c}" for c in SOURCE_COLUMNS["customers"]}
        # The source model's view reads as its role: ``customers``.
        view = columns_read(con, "SELECT c.* FROM activation.src_customers AS c")
        assert "customers.email" in view and "customers.customer_id" in view
