"""The record of processing activities a DPO files: Art. 30(1)(a)-(g) per purpose, every
recipient with legal entity, role, country, safeguard and agreement, the DPO and the EU
representative, version, date and history; Markdown, CSV and a printable HTML page, rendered
in headless Chromium (screenshot in ``test-artifacts/``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.config import load_project_config
from orchestrator.privacy.record import (
    NOT_DECLARED,
    RECORD_CSV_COLUMNS,
    build_record,
    record_changes,
    render_record_csv,
    render_record_html,
    render_record_markdown,
    section_digests,
)
from orchestrator.segments.loader import load_segments
from tests.conftest import REPO

PROJECT = load_project_config(REPO / "activation.yaml")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"


def _record(history: tuple[str, ...] = ("2026-12-01 abc1234 Add a segment",)):
    specs = load_segments(REPO / "segments", PROJECT).specs
    return build_record(PROJECT, specs, history=history)


def test_every_recipient_row_has_every_article_30_field() -> None:
    rows = list(csv.DictReader(io.StringIO(render_record_csv(_record()))))

    assert tuple(rows[0]) == RECORD_CSV_COLUMNS
    # One row per (purpose, recipient): ad_targeting -> meta_ads, email_marketing -> mailchimp.
    assert [(r["purpose"], r["recipient"].split()[0]) for r in rows] == [
        ("ad_targeting", "meta_ads"),
        ("email_marketing", "mailchimp"),
    ]
    for row in rows:
        empty = [name for name, value in row.items() if not value.strip()]
        assert empty == [], (row["recipient"], empty)
        assert NOT_DECLARED not in row.values()
    meta, mailchimp = rows
    assert meta["recipient_legal_entity"] == "Meta Platforms Ireland Ltd"
    assert meta["recipient_role"] == "joint controller (Art. 26)"
    assert mailchimp["recipient_role"] == "processor (Art. 28)"
    assert mailchimp["agreement_reference"].startswith("Mailchimp Data Processing Addendum")
    assert (
        meta["recipient_country"] == "US" and "Data Privacy Framework" in meta["transfer_safeguard"]
    )
    assert "dpo@example.com" in meta["dpo"] and "Paris" in meta["eu_representative"]
    assert meta["record_version"].startswith("v-") and meta["record_date"] == "2026-12-01"
    # Campaigns are the detail of a purpose, not activities of their own: every segment file
    # of the purpose, and no other.
    by_purpose: dict[str, set[str]] = {}
    for sid, loaded in load_segments(REPO / "segments", PROJECT).specs.items():
        by_purpose.setdefault(getattr(loaded, "spec", loaded).purpose, set()).add(sid)
    assert set(mailchimp["campaigns"].split("; ")) == by_purpose["email_marketing"]
    assert set(meta["campaigns"].split("; ")) == by_purpose["ad_targeting"]
    assert "recent_buyers_eu" in by_purpose["email_marketing"]


def test_an_undeclared_recipient_field_says_so() -> None:
    data = PROJECT.model_dump()
    data["destinations"]["mailchimp"]["dpa_reference"] = ""
    project = type(PROJECT).model_validate(data)
    record = build_record(project, load_segments(REPO / "segments", project).specs)
    assert NOT_DECLARED in render_record_csv(record)


def test_version_follows_content_and_changes_are_named(tmp_path: Path) -> None:
    before = _record()
    folder = tmp_path / "segments"
    folder.mkdir()
    for path in (REPO / "segments").glob("*.yaml"):
        (folder / path.name).write_text(path.read_text())
    text = (folder / "recent_buyers_eu.yaml").read_text()
    (folder / "recent_buyers_eu.yaml").write_text(
        text.replace("retention_days: 30", "retention_days: 20")
    )
    after = build_record(PROJECT, load_segments(folder, PROJECT).specs)

    assert _record().version == before.version  # same inputs, same version
    assert after.version != before.version
    assert record_changes(section_digests(before), section_digests(after)) == [
        "changed campaign recent_buyers_eu",
        "changed purpose email_marketing",
    ]


def test_markdown_is_organised_per_purpose_with_history() -> None:
    text = render_record_markdown(_record())
    assert text.count("## Processing activity: ") == 2
    assert "### Campaigns carrying out email_marketing (detail)" in text
    assert "## (a) Controller" in text and "Representative in the Union" in text
    assert "- 2026-12-01 abc1234 Add a segment" in text


def test_cli_writes_every_format(tmp_path: Path, project_env: dict[str, str]) -> None:
    runner = CliRunner()
    for fmt in ("markdown", "csv", "html"):
        out = tmp_path / f"register.{fmt}"
        result = runner.invoke(cli, ["register", "--format", fmt, "--output", str(out)])
        assert result.exit_code == 0, result.output
        assert "Record of processing activities" in out.read_text() or fmt == "csv"
    assert runner.invoke(cli, ["register", "--format", "pdf"]).exit_code == 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason="`make browser-deps` installs /usr/bin/chromium")
def test_the_html_page_renders_in_chromium_and_is_saved(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "register.html"
    page_file.write_text(render_record_html(_record()), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "processing-register.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1200})
            page.goto(page_file.as_uri())
            assert page.locator("h1").inner_text() == "Record of processing activities"
            assert page.locator("section.activity").count() == 2
            headers = page.locator("section.activity table").first.locator("th").all_inner_texts()
            assert headers[:3] == ["Recipient", "Legal entity", "Role"]
            page.screenshot(path=str(shot), full_page=True)
            page.pdf(path=str(ARTIFACTS / "processing-register.pdf"), format="A4")
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
