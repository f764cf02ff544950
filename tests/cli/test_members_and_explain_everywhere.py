"""``activation members SEGMENT [--destination D]`` and ``activation explain EMAIL`` across every
segment: by hash prefix, with legal basis, consent reference, what each destination holds and
what it refused; never an email address."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import duckdb
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.pseudonymize import subject_key
from tests.cli.conftest import AS_OF_TEXT, run_activation
from tests.conftest import REPO
from tests.e2e_harness import EMAIL_RE

SEGMENT, LIST_ID = "recent_buyers_eu", "a1b2c3d4e5"
REASON = "Member in compliance state (injected)"


def _env(project_env: dict[str, str], mock) -> dict[str, str]:
    env = {
        **project_env,
        "MAILCHIMP_BASE_URL": mock.mailchimp_url,
        "MAILCHIMP_API_KEY": mock.mailchimp_token,
        "META_BASE_URL": mock.meta_url,
        "META_ACCESS_TOKEN": mock.meta_token,
    }
    os.environ.update(env)
    return env


def _first_members(warehouse: Path, n: int) -> list[tuple[str, str, str]]:
    """(email, subject_key, consent_ref) of the audience's first members."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "SELECT email, subject_key, consent_ref FROM activation.audience_members "
            "WHERE segment = ? ORDER BY subject_key LIMIT ?",
            [SEGMENT, n],
        ).fetchall()


def test_members_and_explain_after_a_run_with_a_refusal(
    runner: CliRunner, project_env: dict[str, str], warehouse: Path, mock_destinations
) -> None:
    env = _env(project_env, mock_destinations)
    dry = run_activation("run", SEGMENT, "--dry-run", "--as-of", AS_OF_TEXT, env=env, timeout=240)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    (refused_email, refused_key, _), (held_email, held_key, consent) = _first_members(warehouse, 2)
    mock_destinations.add_fault(
        "mailchimp",
        {"method": "POST"},
        {"type": "reject_rows", "values": [refused_email], "error": REASON},
    )
    sent = run_activation("run", SEGMENT, "--as-of", AS_OF_TEXT, env=env, timeout=240)
    assert sent.returncode == 0, sent.stdout + sent.stderr  # a WARN check does not fail the run
    assert "check failed: sync/recent_buyers_eu/mailchimp:rejections (warn)" in sent.stdout

    table = runner.invoke(cli, ["members", SEGMENT, "--destination", "mailchimp"])
    as_csv = runner.invoke(
        cli, ["members", SEGMENT, "--destination", "mailchimp", "--format", "csv"]
    )
    as_json = runner.invoke(cli, ["members", SEGMENT, "--format", "json"])

    for result in (table, as_csv, as_json):
        assert result.exit_code == 0, result.output
        assert not EMAIL_RE.search(result.output)
    rows = {r["subject"]: r for r in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert rows[held_key[:12]]["status"] == "held"
    assert rows[held_key[:12]]["consent_ref"] == consent
    assert rows[held_key[:12]]["legal_basis"] == "consent"
    assert rows[refused_key[:12]]["status"] == "refused"
    assert REASON in rows[refused_key[:12]]["refused_reason"]
    members = json.loads(as_json.stdout)
    assert len(members) == len(rows) and {"subject", "consent_ref"} <= set(members[0])
    assert held_key[:12] in table.stdout

    everywhere = runner.invoke(cli, ["explain", refused_email, "--as-of", AS_OF_TEXT])
    assert everywhere.exit_code == 0, everywhere.output
    assert refused_email.lower() not in everywhere.output.lower()
    assert "refused by: recent_buyers_eu/mailchimp" in everywhere.stdout
    assert REASON in everywhere.stdout
    found = json.loads(
        runner.invoke(
            cli, ["explain", held_email, "--as-of", AS_OF_TEXT, "--format", "json"]
        ).stdout
    )
    assert found["subject"].startswith(subject_key(held_email)[:12])
    assert found["held_by"] == ["recent_buyers_eu/mailchimp"]
    # Every shipped segment file is explained, not only the one that ran.
    shipped = sorted(p.stem for p in (REPO / "segments").glob("*.yaml"))
    assert sorted(e["segment"] for e in found["segments"]) == shipped
    assert SEGMENT in shipped and len(shipped) > 1
    # Every destination of every segment is covered.
    destinations = {d["destination"] for e in found["segments"] for d in e["destinations"]}
    assert destinations == {"mailchimp", "meta_ads"}


def test_members_errors(runner: CliRunner, project_env: dict[str, str]) -> None:
    unknown = runner.invoke(cli, ["members", "nope"])
    assert unknown.exit_code == 1 and "valid segments:" in unknown.stderr
    elsewhere = runner.invoke(cli, ["members", SEGMENT, "--destination", "meta_ads"])
    assert elsewhere.exit_code == 1
    assert "does not sync to 'meta_ads'" in elsewhere.stderr
    never_run = runner.invoke(cli, ["members", SEGMENT])
    assert never_run.exit_code == 1 and "run the segments first" in never_run.stderr
    bad_format = runner.invoke(cli, ["members", SEGMENT, "--format", "xml"])
    assert bad_format.exit_code == 2


def test_explain_everywhere_errors_in_a_subprocess(project_env: dict[str, str]) -> None:
    bad = run_activation("explain", "not-an-address", env=project_env)
    assert bad.returncode == 1 and "not-an-address" not in bad.stdout + bad.stderr
    # before any segment run the source model's views are made current and explain answers
    never_run = run_activation("explain", "jane.roe@example.com", env=project_env)
    assert never_run.returncode == 0, never_run.stderr
    assert "in the last computed audience: no" in never_run.stdout
    assert "jane.roe@example.com" not in never_run.stdout + never_run.stderr
