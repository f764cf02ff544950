"""A small project for the privacy tests: synthetic warehouse, two SQL segments, three
destinations (meta_ads, meta_ads_eu with Google keys, mailchimp), all through the real
Definitions and the mock destinations. Synthetic people only (Faker, example.com; one
gmail.com address because Gmail variants are the point)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import yaml
from dagster_duckdb import DuckDBResource
from faker import Faker

from orchestrator.assets import segment_key, sync_key
from orchestrator.config import load_project_config
from orchestrator.definitions import ALL_SEGMENTS_JOB, build_definitions
from orchestrator.settings import Settings
from orchestrator.warehouse.factory import open_postgres, target_for
from orchestrator.warehouse.resources import PostgresResource
from orchestrator.warehouse.schema import create_activation_schema, create_source_schema
from orchestrator.warehouse.target import Warehouse, WarehouseTarget, as_target
from tests.source_layout import repo_config, write_layout_config

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 29, 6, 0, 0)
ADS, MAIL = "ads_people", "mail_people"
META_AUD, META_EU_AUD, LIST = "120210000000901", "120210000000902", "privacylist01"
#: The person who makes requests: a Gmail address (dots matter to Google keys only).
ERIN = "Erin.Tester@gmail.com"
ERIN_ID = 1
OTHERS = (2, 3, 4)
#: Customer ids a later import may use (the segments already select them).
LATER_IDS = (101, 102)


def md5(text: str) -> str:
    return hashlib.md5(text.lower().encode(), usedforsecurity=False).hexdigest()


def write_config(path: Path, warehouse: dict[str, Any] | None = None) -> Path:
    """activation.yaml plus a third destination ``meta_ads_eu`` (Google normalization);
    ``warehouse``: its ``warehouse:`` section (default: the DuckDB file of the environment)."""
    data = repo_config()  # the hand-built layout's model
    if warehouse is not None:
        data["warehouse"] = warehouse
    data["destinations"]["meta_ads_eu"] = {
        "platform": "meta",
        "kind": "ad",
        "purposes": ["ad_targeting"],
        "country": "IE",
        "transfer_safeguard": "EU (no transfer)",
        "base_url_env": "META_BASE_URL",
        "token_env": "META_ACCESS_TOKEN",
        "normalization": "google",
    }
    return write_layout_config(path, data)


def _segment(name: str, purpose: str, destinations: list[dict]) -> str:
    ids = ", ".join(str(i) for i in (ERIN_ID, *OTHERS, *LATER_IDS))
    return yaml.safe_dump(
        {
            "name": name,
            "description": f"privacy test segment {name}",
            "owner": "privacy-team@example.com",
            "purpose": purpose,
            "legal_basis": "consent",
            "retention_days": 30,
            "schedule": "0 6 * * *",
            "sql": f"SELECT customer_id FROM customers WHERE customer_id IN ({ids})",
            "destinations": destinations,
        }
    )


def write_segments(folder: Path) -> Path:
    """Two segments: ads (meta_ads + meta_ads_eu) and mail (mailchimp), mode mirror."""
    folder.mkdir()
    ads = [
        {"destination": "meta_ads", "audience_id": META_AUD, "mode": "mirror"},
        {"destination": "meta_ads_eu", "audience_id": META_EU_AUD, "mode": "mirror"},
    ]
    mail = [
        {
            "destination": "mailchimp",
            "audience_id": LIST,
            "mode": "mirror",
            "fields": {"COUNTRY": "country"},
        }
    ]
    (folder / f"{ADS}.yaml").write_text(_segment(ADS, "ad_targeting", ads))
    (folder / f"{MAIL}.yaml").write_text(_segment(MAIL, "email_marketing", mail))
    return folder


def add_customer(con: duckdb.DuckDBPyConnection, cid: int, email: str, at: datetime) -> None:
    """A customer collected at ``at`` with a granted consent for both purposes at ``at``."""
    con.execute("INSERT INTO customers VALUES (?, ?, 'FR', 'France', ?, ?)", [cid, email, at, at])
    for purpose in ("email_marketing", "ad_targeting"):
        con.execute(
            "INSERT INTO consents VALUES (?, ?, ?, 'granted', ?, 'signup_form', 'v3')",
            [f"c-{cid}-{purpose}-{at:%Y%m%d%H%M}", cid, purpose, at],
        )


def write_warehouse(path: Path) -> dict[int, str]:
    """Erin (id 1) and three synthetic others, all consenting 10 days before AS_OF."""
    fake = Faker()
    fake.seed_instance(4242)
    emails = {ERIN_ID: ERIN}
    emails.update({cid: f"{fake.user_name()}{cid}@example.com" for cid in OTHERS})
    con = duckdb.connect(str(path))
    try:
        create_source_schema(con)
        create_activation_schema(con)
        for cid, email in emails.items():
            add_customer(con, cid, email, AS_OF - timedelta(days=10))
    finally:
        con.close()
    return emails


def load_defs() -> dg.Definitions:
    """The project's real Definitions for the current environment."""
    settings = Settings.from_env()
    return build_definitions(settings, load_project_config(settings.config_path))


SEGMENT_DESTINATIONS = {ADS: ["meta_ads", "meta_ads_eu"], MAIL: ["mailchimp"]}


def segments_run_config(as_of: datetime = AS_OF) -> dict:
    """Run config giving ``as_of`` to every segment (and audience) and sync step."""
    keys = []
    for sid, destinations in SEGMENT_DESTINATIONS.items():
        keys += [segment_key(sid), *(sync_key(sid, d) for d in destinations)]
    config = {"config": {"as_of": as_of.isoformat()}}
    return {"ops": {key.to_python_identifier(): config for key in keys}}


def run_segments(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """Run both segments end to end (segment, audience, syncs) at AS_OF, in one run."""
    result = defs.resolve_job_def(ALL_SEGMENTS_JOB).execute_in_process(
        run_config=segments_run_config(), instance=instance
    )
    assert result.success


def warehouse_of(settings: Settings) -> WarehouseTarget:
    """The warehouse the project of ``settings`` names (a DuckDB file or a PostgreSQL
    database), as the product's stages take it."""
    project = load_project_config(settings.config_path)
    return target_for(project.warehouse, settings.project_dir, settings.warehouse_path)


@contextmanager
def opened(wh: Warehouse) -> Iterator[Any]:
    """A plain connection to ``wh`` (a DuckDB path or a target), for a test's own reads and
    writes in the shared SQL: DuckDB opened as is, PostgreSQL with the product's tables
    ready. Closed after the block."""
    target = as_target(wh)
    if target.kind == "postgres":
        password, source = target.resolved_password()
        con = open_postgres(target.config, password=password, password_from=source)
    else:
        con = duckdb.connect(str(target.duckdb_path))
    try:
        yield con
    finally:
        con.close()


def resource_of(wh: Warehouse) -> dg.ConfigurableResource:
    """The Dagster ``warehouse`` resource of ``wh`` (what the Definitions bind)."""
    target = as_target(wh)
    if target.kind == "postgres":
        password, _ = target.resolved_password()
        config = target.config
        return PostgresResource(url=config.url, password=password)
    return DuckDBResource(database=str(target.duckdb_path))


def rows(wh: Warehouse, sql: str, params: list | None = None) -> list[tuple]:
    """The rows of ``sql`` (shared SQL) on ``wh``."""
    with opened(wh) as con:
        return con.execute(sql, params or []).fetchall()
