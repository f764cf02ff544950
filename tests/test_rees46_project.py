"""A second, independent project (the REES46 clickstream sample with its own member tables and
its own model file): configuration alone maps it, and the plain-Python oracle agrees with the
product for every segment, custom traits and the cart-abandoner segment included."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from orchestrator.audience import EXCLUSION_REASONS, build_segment_audience
from orchestrator.config import ProjectConfig, load_project_config
from orchestrator.model.catalog import build_catalog, write_catalog
from orchestrator.segments.loader import load_segment_text, load_segments
from orchestrator.segments.materialize import write_segment_members
from orchestrator.warehouse.schema import create_activation_schema
from tests.oracle import expected_audiences
from tests.projects.rees46 import warehouse as rees46

FIXTURE = Path(rees46.__file__).resolve().parent


@pytest.fixture(scope="module")
def project_and_warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProjectConfig, Path]:
    """The project copied aside, its warehouse built, its catalog written from it."""
    root = tmp_path_factory.mktemp("rees46")
    shutil.copytree(FIXTURE / "segments", root / "segments")
    shutil.copyfile(FIXTURE / "activation.yaml", root / "activation.yaml")
    path = root / "warehouse.duckdb"
    rees46.build(path)
    project = load_project_config(root / "activation.yaml")
    with duckdb.connect(str(path)) as con:
        create_activation_schema(con)
        built = build_catalog(con, project)
    write_catalog(root / "catalog.json", built.catalog)
    # the member app's "LATER" answers map to nothing: counted, never consent
    assert set(built.unmapped_consents) == {"answer='LATER'"}
    return load_project_config(root / "activation.yaml"), path


def _product(path: Path, project: ProjectConfig, specs: dict) -> dict[str, dict]:
    out = {}
    with duckdb.connect(str(path)) as con:
        for sid, spec in specs.items():
            write_segment_members(con, spec, rees46.AS_OF)
            build_segment_audience(con, spec, project, rees46.AS_OF)
            out[sid] = {
                "segment": {
                    cid
                    for (cid,) in con.execute(
                        "SELECT customer_id FROM activation.segment_members WHERE segment = ?",
                        [sid],
                    ).fetchall()
                },
                "members": dict(
                    con.execute(
                        "SELECT subject_key, consent_ref FROM activation.audience_members "
                        "WHERE segment = ?",
                        [sid],
                    ).fetchall()
                ),
                "exclusions": dict(
                    con.execute(
                        "SELECT customer_id, reason FROM activation.audience_exclusions "
                        "WHERE segment = ?",
                        [sid],
                    ).fetchall()
                ),
            }
    return out


def test_the_catalog_holds_this_projects_own_names(
    project_and_warehouse: tuple[ProjectConfig, Path],
) -> None:
    project, _ = project_and_warehouse
    catalog = project.catalog
    assert catalog.event_types == ("cart", "purchase", "view")
    assert {"membership", "lifetime_spend", "newsletter_opt"} <= set(catalog.traits)
    assert catalog.traits["newsletter_opt"] == "boolean"
    assert "profile_synced_at" not in catalog.traits
    assert set(catalog.event_fields) == {"category_code", "brand", "price", "product_id"}


def test_the_oracle_agrees_with_the_product_on_every_segment(
    project_and_warehouse: tuple[ProjectConfig, Path],
) -> None:
    project, path = project_and_warehouse
    loaded = load_segments(path.parent / "segments", project)
    assert loaded.ok, loaded.errors
    specs = {sid: seg.spec for sid, seg in loaded.specs.items()}
    assert set(specs) == {
        "cart_abandoners",
        "plus_electronics_viewers",
        "big_spenders",
        "brand_loyal_sql",
    }
    got = _product(path, project, specs)
    expected = expected_audiences(path, specs, project, rees46.AS_OF)
    for sid in specs:
        want = expected[sid]
        assert got[sid]["segment"] == set(want.segment_members), sid
        assert got[sid]["members"] == want.consent_refs, sid
        assert got[sid]["exclusions"] == want.exclusions, sid
        assert set(want.exclusions.values()) <= set(EXCLUSION_REASONS)
    # the cart abandoners are the ones who carted and did not buy: some of them, not nobody
    abandoners = expected["cart_abandoners"]
    assert 5 <= len(abandoners.segment_members) <= 34 and abandoners.members
    # partner consents are unproven; a "LATER" answer is not consent; soft opt-in is used
    reasons = {r for a in expected.values() for r in a.exclusions.values()}
    assert {"consent_unproven", "no_consent", "withdrawn"} <= reasons
    assert (
        any(
            ref.startswith("purchase:")
            for ref in expected["plus_electronics_viewers"].consent_refs.values()
        )
        or expected["plus_electronics_viewers"].members
    )


LAPSED = """\
name: plus_members
description: Every plus member
owner: crm@example.org
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
audience:
  all:
    - trait: membership
      eq: plus
destinations:
  - destination: mailchimp
    audience_id: "p1u5"
    mode: mirror
"""


def test_an_import_column_never_resets_the_retention_clock(
    project_and_warehouse: tuple[ProjectConfig, Path], tmp_path: Path
) -> None:
    """A member inactive since 2016 whose row the nightly import touched yesterday is past
    retention; declaring the import column an own action (the mistake) would have let them in."""
    project, template = project_and_warehouse
    path = tmp_path / "w.duckdb"
    shutil.copyfile(template, path)
    with duckdb.connect(str(path)) as con:
        con.execute(
            "INSERT INTO app.members VALUES (999, 'lapsed@example.org', 'plus', 10, false, "
            "'2016-01-01', '2016-02-01', '2019-09-30 23:00');"
            "INSERT INTO app.marketing_permissions VALUES ('p999', 999, 'EMAIL', 'YES', "
            "'2019-01-01', 'signup_form', '2018-05')"
        )
    spec = load_segment_text(LAPSED, "segments/plus_members.yaml", project)

    def reason(model_project: ProjectConfig) -> str | None:
        with duckdb.connect(str(path)) as con:
            write_segment_members(con, spec, rees46.AS_OF)
            build_segment_audience(con, spec, model_project, rees46.AS_OF)
            row = con.execute(
                "SELECT reason FROM activation.audience_exclusions "
                "WHERE segment = 'plus_members' AND customer_id = 999"
            ).fetchone()
        return None if row is None else row[0]

    assert reason(project) == "retention_expired"
    expected = expected_audiences(path, {"plus_members": spec}, project, rees46.AS_OF)
    assert expected["plus_members"].exclusions[999] == "retention_expired"
    customers = project.source.customers.model_copy(
        update={"own_action_columns": ("last_login_at", "profile_synced_at")}
    )
    wrong = project.model_copy(
        update={"source": project.source.model_copy(update={"customers": customers})}
    )
    assert reason(wrong) is None  # counted as an action, the import would have reset the clock


def test_a_future_dated_own_action_column_never_hides_an_older_valid_one(
    project_and_warehouse: tuple[ProjectConfig, Path], tmp_path: Path
) -> None:
    """Two own-action columns: a login last month (valid) and a date after as-of (a typo, a
    clock skew). Dates after as-of are dropped per column before the latest is taken, so the
    login still counts and the member signed up in 2016 is within retention."""
    project, template = project_and_warehouse
    path = tmp_path / "w.duckdb"
    shutil.copyfile(template, path)
    with duckdb.connect(str(path)) as con:
        con.execute(
            "INSERT INTO app.members VALUES (998, 'active@example.org', 'plus', 10, false, "
            "'2016-01-01', '2019-09-01 10:00', '2019-12-01 00:00');"
            "INSERT INTO app.marketing_permissions VALUES ('p998', 998, 'EMAIL', 'YES', "
            "'2019-06-01', 'signup_form', '2018-05')"
        )
    customers = project.source.customers.model_copy(
        update={"own_action_columns": ("profile_synced_at", "last_login_at")}
    )
    both = project.model_copy(
        update={"source": project.source.model_copy(update={"customers": customers})}
    )
    spec = load_segment_text(LAPSED, "segments/plus_members.yaml", both)
    with duckdb.connect(str(path)) as con:
        write_segment_members(con, spec, rees46.AS_OF)
        build_segment_audience(con, spec, both, rees46.AS_OF)
        excluded = con.execute(
            "SELECT reason FROM activation.audience_exclusions "
            "WHERE segment = 'plus_members' AND customer_id = 998"
        ).fetchall()
    assert excluded == []
    expected = expected_audiences(path, {"plus_members": spec}, both, rees46.AS_OF)
    assert 998 not in expected["plus_members"].exclusions
