"""Consent signals follow the member's country trait, through the real job to Google's mock.

Google's EU user consent policy covers users in the EEA, the UK and Switzerland; the mock
refuses an upload for a user it places there without both signals. Members of those countries
and of an unknown country (empty, or not an ISO code) are sent explicit signals; members of a
known country outside them are sent none (:mod:`orchestrator.consent_signals`).
"""

from __future__ import annotations

import dagster as dg
import duckdb
import yaml

from destinations.mock.testing import running_mock
from orchestrator.consent_signals import outside_regions_sql, signals_required
from orchestrator.pseudonymize import google_key
from tests.sync.answers_project import ADS, AS_OF, GOOGLE_AUD, run_job, sql, synthetic_emails

GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
COUNTRIES = {1: "FR", 2: "US", 3: None, 4: "France", 5: "gb ", 6: "ch", 7: "BR"}


def test_signals_follow_the_country_trait_end_to_end(answers_env, tmp_path, dagster_home) -> None:
    emails = dict(enumerate(synthetic_emails(len(COUNTRIES), seed=1602), start=1))
    with running_mock(tmp_path / "mock") as mock:
        project = answers_env(mock, emails, google=True)
        segment = project.segments / f"{ADS}.yaml"
        spec = yaml.safe_load(segment.read_text())
        spec["sql"] = "SELECT customer_id FROM customers"  # every country
        segment.write_text(yaml.safe_dump(spec))
        for cid, country in COUNTRIES.items():
            sql(
                project.warehouse,
                "UPDATE customers SET country = ? WHERE customer_id = ?",
                [country, cid],
            )
        keys = {cid: google_key(e) for cid, e in emails.items()}
        # Google places in the EEA, UK or Switzerland everyone but the US and Brazil members
        mock.google_eea_users([keys[c] for c in (1, 3, 4, 5, 6)])
        with dg.DagsterInstance.get() as instance:
            assert run_job(instance).success
        held = {m["identifiers"][0]: m["consent"] for m in mock.google_members(GOOGLE_AUD)}
        refused = sql(
            project.warehouse,
            "SELECT count(*) FROM activation.sync_rejections WHERE destination = 'google_ads'",
        )
    assert refused == [(0,)]
    # explain says what was sent, and why nothing was for the member outside
    us, fr = _explain(project, emails[2]), _explain(project, emails[1])
    assert "consent signal ad_user_data=not sent (country US is outside the EEA" in us
    assert "consent signal ad_user_data=CONSENT_GRANTED (" in fr
    assert held == {
        keys[1]: GRANTED,  # EEA
        keys[2]: {},  # outside: not subject to the EEA requirement, nothing claimed
        keys[3]: GRANTED,  # unknown country: the protective choice
        keys[4]: GRANTED,  # not an ISO code: unknown
        keys[5]: GRANTED,  # the UK (case and spaces ignored)
        keys[6]: GRANTED,  # Switzerland
        keys[7]: {},
    }


def _explain(project, email: str) -> str:
    from orchestrator.config import load_project_config
    from orchestrator.privacy.explain import explain, format_explanation
    from orchestrator.segments.loader import load_segments

    config = load_project_config(project.config)
    specs = load_segments(project.segments, config).specs
    return format_explanation(explain(project.warehouse, email, ADS, config, specs, AS_OF))


def test_the_sql_rule_agrees_with_the_python_reference() -> None:
    values = ["FR", " fr ", "US", "us", None, "", "France", "GB", "CH", "NO", "XX", "BR", "de"]
    outside, params = outside_regions_sql("c")
    con = duckdb.connect()
    try:
        got = [
            con.execute(
                f"SELECT NOT ({outside}) FROM (SELECT ?::VARCHAR AS c)", [*params, v]
            ).fetchone()[0]
            for v in values
        ]
    finally:
        con.close()
    assert got == [signals_required(v) for v in values]
    assert got == [True, True, False, False, True, True, True, True, True, True, True, False, True]
