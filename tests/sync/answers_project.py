"""A small project for end-to-end tests of what destinations answer: a synthetic warehouse
(Faker, example.com), two SQL segments (``ads_fr`` -> Meta, ``mail_fr`` -> Mailchimp, members:
customers in FR), the real Definitions and job, the mock destinations. With ``google=True`` the
ads segment also goes to ``google_ads`` (Google's Data Manager API, both consent signals from
the ``ad_targeting`` consent) and the customers get a ``phone`` column the source model reads.

The segment modes and the Meta normalization are parameters, so one test covers every mode.
Leaving a segment = moving out of FR; withdrawing = a newer ``withdrawn`` consent.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from faker import Faker

from orchestrator.assets import segment_key, sync_key
from orchestrator.config import load_project_config
from orchestrator.definitions import ALL_SEGMENTS_JOB, build_definitions
from orchestrator.settings import Settings
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema
from orchestrator.warehouse.target import Warehouse, WarehouseTarget
from tests.conftest import REPO
from tests.source_layout import repo_config

AS_OF = datetime(2026, 11, 29, 6, 0, 0)
ADS, MAIL = "ads_fr", "mail_fr"
META_AUD, LIST, GOOGLE_AUD = "120210000000777", "answerslist01", "5550077"


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


def synthetic_emails(n: int, seed: int = 1103) -> list[str]:
    fake = Faker()
    fake.seed_instance(seed)
    return [f"{fake.user_name()}.{i}@example.com" for i in range(1, n + 1)]


@dataclass(frozen=True)
class AnswersProject:
    """Paths and settings of one test project (``warehouse``: a DuckDB file or a PostgreSQL
    target; ``config`` path)."""

    warehouse: Warehouse
    config: Path
    segments: Path
    mock: object


def write_config(
    path: Path,
    *,
    normalization: str = "base",
    google: bool = False,
    warehouse: Warehouse | None = None,
) -> Path:
    """activation.yaml of the repository, with the hand-built layout's model, ``meta_ads``
    normalized as asked; ``google``: a ``google_ads`` destination and the customers' ``phone``
    column in the source model; ``warehouse``: a PostgreSQL target becomes its ``warehouse:``
    (``kind: postgres``, the URL, the password's environment variable)."""
    data = repo_config()  # the hand-built layout's model
    if isinstance(warehouse, WarehouseTarget) and warehouse.kind == "postgres":
        data["warehouse"] = warehouse.config.model_dump(exclude_defaults=True) | {
            "kind": "postgres"
        }
    data["destinations"]["meta_ads"]["normalization"] = normalization
    if google:
        data["purposes"]["ad_targeting"]["consent_signals"] = {
            "google": {"ad_user_data": "ad_targeting", "ad_personalization": "ad_targeting"}
        }
        data["destinations"]["google_ads"] = {
            "platform": "google",
            "kind": "ad",
            "purposes": ["ad_targeting"],
            "country": "US",
            "transfer_safeguard": "EU-US Data Privacy Framework (adequacy decision, 2023)",
            "base_url_env": "GOOGLE_BASE_URL",
            "token_env": "GOOGLE_ACCESS_TOKEN",
            "account_id": "1234567890",
        }
        customers = data["source"]["customers"]
        customers["select"] = customers["select"].replace("c.email,", "c.email, c.phone,")
    path.write_text(yaml.safe_dump(data))
    return path


def _segment(name: str, purpose: str, destinations: list[dict]) -> str:
    return yaml.safe_dump(
        {
            "name": name,
            "description": f"answers test segment {name}",
            "owner": "crm-team@example.com",
            "purpose": purpose,
            "legal_basis": "consent",
            "retention_days": 30,
            "schedule": "0 6 * * *",
            "sql": "SELECT customer_id FROM customers WHERE country = 'FR'",
            "destinations": destinations,
        }
    )


def write_segments(
    folder: Path, *, ads_mode: str = "mirror", mail_mode: str = "mirror", google: bool = False
) -> Path:
    folder.mkdir(exist_ok=True)
    ads = [{"destination": "meta_ads", "audience_id": META_AUD, "mode": ads_mode}]
    if google:
        ads.append({"destination": "google_ads", "audience_id": GOOGLE_AUD, "mode": ads_mode})
    mail = [
        {
            "destination": "mailchimp",
            "audience_id": LIST,
            "mode": mail_mode,
            "fields": {"COUNTRY": "country"},
        }
    ]
    (folder / f"{ADS}.yaml").write_text(_segment(ADS, "ad_targeting", ads))
    (folder / f"{MAIL}.yaml").write_text(_segment(MAIL, "email_marketing", mail))
    return folder


def add_customer(con: duckdb.DuckDBPyConnection, cid: int, email: str, at: datetime) -> None:
    """A customer in FR with a granted consent for both purposes at ``at``."""
    con.execute(
        "INSERT INTO customers (customer_id, email, country, country_name, created_at,"
        " last_contact_at) VALUES (?, ?, 'FR', 'France', ?, ?)",
        [cid, email, at, at],
    )
    for purpose in ("email_marketing", "ad_targeting"):
        con.execute(
            "INSERT INTO consents VALUES (?, ?, ?, 'granted', ?, 'signup_form', 'v3')",
            [f"c-{cid}-{purpose}", cid, purpose, at],
        )


def write_warehouse(where: Warehouse, emails: dict[int, str], *, phone: bool = False) -> None:
    with connect(where) as con:
        create_source_schema(con)
        create_activation_schema(con)
        if phone:
            con.execute("ALTER TABLE customers ADD COLUMN phone VARCHAR")
        for cid, email in emails.items():
            add_customer(con, cid, email, AS_OF - timedelta(days=10))


def sql(where: Warehouse, statement: str, params: list | None = None) -> list[tuple]:
    """The rows of ``statement`` (shared SQL) in the project's warehouse (either backend)."""
    with connect(where) as con:
        return con.execute(statement, params or []).fetchall()


def withdraw(path: Path, cid: int, purpose: str, at: datetime) -> None:
    sql(
        path,
        "INSERT INTO consents VALUES (?, ?, ?, 'withdrawn', ?, 'preference_center', 'v3')",
        [f"w-{cid}-{purpose}-{at:%H%M%S}", cid, purpose, at],
    )


def load_defs() -> dg.Definitions:
    settings = Settings.from_env()
    return build_definitions(settings, load_project_config(settings.config_path))


def segment_destinations() -> dict[str, list[str]]:
    """Segment id -> its destinations, read from the segment files the Definitions read."""
    out = {}
    for path in sorted(Path(os.environ["ACTIVATION_SEGMENTS_DIR"]).glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        out[spec["name"]] = [d["destination"] for d in spec["destinations"]]
    return out


def run_config(as_of: datetime) -> dict:
    keys = []
    for sid, destinations in segment_destinations().items():
        keys += [segment_key(sid), *(sync_key(sid, d) for d in destinations)]
    config = {"config": {"as_of": as_of.isoformat()}}
    return {"ops": {key.to_python_identifier(): config for key in keys}}


def run_job(instance: dg.DagsterInstance, as_of: datetime = AS_OF, *, raise_on_error=True):
    """The real all-segments job (privacy receipts, segments, audiences, syncs, checks)."""
    return (
        load_defs()
        .resolve_job_def(ALL_SEGMENTS_JOB)
        .execute_in_process(
            run_config=run_config(as_of), instance=instance, raise_on_error=raise_on_error
        )
    )


def sync_metadata(result, sid: str, destination: str) -> dict:
    """The sync asset's materialization metadata values of a run."""
    key = sync_key(sid, destination)
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == key:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {key.to_user_string()}")


def check_results(result) -> dict[str, tuple[bool, str]]:
    """``asset:check`` -> (passed, severity) for every check evaluated in the run."""
    out = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            key = f"{ev.asset_check_key.asset_key.to_user_string()}:{ev.asset_check_key.name}"
            out[key] = (ev.passed, str(ev.severity))
    return out


def project_maker(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
    warehouse: Warehouse | None = None,
):
    """A function writing a temp project (modes, normalization, customers) and pointing the
    environment of the real Definitions at it (the ``answers_env`` fixture); ``warehouse``: a
    PostgreSQL target the project's ``warehouse:`` names (None: a DuckDB file)."""

    def make(
        mock,
        emails: dict[int, str],
        *,
        ads_mode="mirror",
        mail_mode="mirror",
        normalization="base",
        google=False,
    ) -> AnswersProject:
        project = AnswersProject(
            warehouse or tmp_path / "warehouse.duckdb",
            write_config(
                tmp_path / "activation.yaml",
                normalization=normalization,
                google=google,
                warehouse=warehouse,
            ),
            write_segments(
                tmp_path / "segments", ads_mode=ads_mode, mail_mode=mail_mode, google=google
            ),
            mock,
        )
        env = {
            "ACTIVATION_PROJECT_DIR": str(REPO),
            "ACTIVATION_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
            "ACTIVATION_STATE_DIR": str(tmp_path / "state"),
            "ACTIVATION_SEGMENTS_DIR": str(project.segments),
            "ACTIVATION_CONFIG": str(project.config),
            "DAGSTER_HOME": str(dagster_home),
            "META_BASE_URL": mock.meta_url,
            "META_ACCESS_TOKEN": mock.meta_token,
            "MAILCHIMP_BASE_URL": mock.mailchimp_url,
            "MAILCHIMP_API_KEY": mock.mailchimp_token,
            "GOOGLE_BASE_URL": mock.google_url,
            "GOOGLE_ACCESS_TOKEN": mock.google_token,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        write_warehouse(project.warehouse, emails, phone=google)
        return project

    return make
