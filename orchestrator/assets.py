"""Build Dagster assets from one parsed segment (parse first, then build).

For a segment with id ``<sid>`` this module builds:

``segment/<sid>``
    members of the segment, written to ``activation.segment_members`` (segment, customer_id).
``audience/<sid>``
    consent-filtered, pseudonymized members, written to ``activation.audience_members``
    (segment, subject_key, google_key, customer_id, email, legal_basis, consent_ref) with the
    exclusions by reason in ``activation.audience_exclusions``.

The builder never reads files: it takes a :class:`LoadedSegment` and the project config.
Every asset that writes the DuckDB file is in pool ``duckdb`` (one writer at a time).
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
from dagster_duckdb import DuckDBResource

from orchestrator.audience import EXCLUSION_REASONS, build_audience
from orchestrator.config import ProjectConfig
from orchestrator.segments.compiler import compile_segment
from orchestrator.segments.loader import LoadedSegment
from orchestrator.warehouse.schema import create_activation_schema

DUCKDB_POOL = "duckdb"
SOURCE_TABLES = ("customers", "events", "consents", "privacy_requests")


class RunConfig(dg.Config):
    """Run configuration shared by the segment assets.

    ``as_of``: ISO timestamp (UTC) the segment is evaluated at; default: now. Windows such as
    ``within_days`` and consent validity count back from it.
    """

    as_of: str | None = None


def resolve_as_of(config: RunConfig) -> datetime:
    """The evaluation time for a run, as a naive UTC datetime (the warehouse stores naive UTC)."""
    if config.as_of:
        parsed = datetime.fromisoformat(config.as_of)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    return datetime.now(UTC).replace(tzinfo=None)


def source_key(table: str) -> dg.AssetKey:
    """Asset key of a warehouse source table."""
    return dg.AssetKey(["warehouse", table])


def segment_key(segment_id: str) -> dg.AssetKey:
    return dg.AssetKey(["segment", segment_id])


def audience_key(segment_id: str) -> dg.AssetKey:
    return dg.AssetKey(["audience", segment_id])


def source_asset_specs() -> list[dg.AssetSpec]:
    """One external AssetSpec per warehouse source table (group ``warehouse``)."""
    descriptions = {
        "customers": "Customers: id, raw email, country, collection and last contact dates.",
        "events": "Purchases and refunds (invoice lines) with product and value in GBP.",
        "consents": "Append-only consent log per customer and purpose.",
        "privacy_requests": "Erasure (GDPR Art. 17) and objection (Art. 21) requests.",
    }
    return [
        dg.AssetSpec(
            key=source_key(table),
            description=descriptions[table],
            group_name="warehouse",
            kinds={"duckdb"},
        )
        for table in SOURCE_TABLES
    ]


def _definition_metadata(loaded: LoadedSegment) -> dict[str, object]:
    spec = loaded.spec
    return {
        "purpose": spec.purpose,
        "legal_basis": str(spec.legal_basis),
        "retention_days": spec.retention_days,
        "owner": spec.owner,
        "source_file": str(loaded.path),
    }


def _tags(loaded: LoadedSegment) -> dict[str, str]:
    return {"purpose": loaded.spec.purpose, "legal_basis": str(loaded.spec.legal_basis)}


def audience_column_lineage() -> dg.TableColumnLineage:
    """Which warehouse columns each audience column comes from."""
    email = dg.TableColumnDep(asset_key=source_key("customers"), column_name="email")
    customer = dg.TableColumnDep(asset_key=source_key("customers"), column_name="customer_id")
    consent_id = dg.TableColumnDep(asset_key=source_key("consents"), column_name="consent_id")
    status = dg.TableColumnDep(asset_key=source_key("consents"), column_name="status")
    purchase = dg.TableColumnDep(asset_key=source_key("events"), column_name="event_id")
    return dg.TableColumnLineage(
        deps_by_column={
            "subject_key": [email],
            "google_key": [email],
            "email": [email],
            "customer_id": [customer],
            "consent_ref": [consent_id, purchase],
            "legal_basis": [status, purchase],
        }
    )


AUDIENCE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("subject_key", "VARCHAR", description="sha256 of the normalized email"),
        dg.TableColumn("google_key", "VARCHAR", description="sha256, Google normalization"),
        dg.TableColumn("customer_id", "BIGINT"),
        dg.TableColumn("email", "VARCHAR", description="normalized email, stays in warehouse"),
        dg.TableColumn("legal_basis", "VARCHAR", description="consent or legitimate_interest"),
        dg.TableColumn("consent_ref", "VARCHAR", description="consent_id or purchase:<event_id>"),
    ]
)


def build_segment_asset(loaded: LoadedSegment) -> dg.AssetsDefinition:
    """The ``segment/<sid>`` asset: runs the compiled segment query, stores its members."""
    spec = loaded.spec
    sid = spec.id

    @dg.asset(
        key=segment_key(sid),
        deps=[source_key("customers"), source_key("events")],
        group_name=sid,
        description=f"Members of segment {sid}: {spec.description}",
        owners=[spec.owner],
        kinds={"duckdb"},
        tags=_tags(loaded),
        metadata=_definition_metadata(loaded),
        pool=DUCKDB_POOL,
    )
    def _segment(
        context: dg.AssetExecutionContext, config: RunConfig, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        as_of = resolve_as_of(config)
        query = compile_segment(spec, as_of)
        with warehouse.get_connection() as con:
            create_activation_schema(con)
            con.execute("BEGIN")
            con.execute("DELETE FROM activation.segment_members WHERE segment = ?", [sid])
            con.execute(
                "INSERT INTO activation.segment_members "
                f"SELECT ?, customer_id, ? FROM ({query.sql}) AS q",
                [sid, as_of, *query.params],
            )
            con.execute("COMMIT")
            (members,) = con.execute(
                "SELECT count(*) FROM activation.segment_members WHERE segment = ?", [sid]
            ).fetchone()
        context.log.info(f"segment {sid}: {members} members as of {as_of.isoformat()}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": members,
                "as_of": as_of.isoformat(),
                "query": dg.MetadataValue.md(f"```sql\n{query.sql}\n```"),
            }
        )

    return _segment


def build_audience_asset(loaded: LoadedSegment, project: ProjectConfig) -> dg.AssetsDefinition:
    """The ``audience/<sid>`` asset: consent filter and pseudonymization of the members."""
    spec = loaded.spec
    sid = spec.id

    @dg.asset(
        key=audience_key(sid),
        deps=[
            segment_key(sid),
            source_key("customers"),
            source_key("events"),
            source_key("consents"),
            source_key("privacy_requests"),
        ],
        group_name=sid,
        description=(
            f"Audience of {sid}: members with a valid legal basis ({spec.legal_basis}) for "
            f"{spec.purpose}, pseudonymized (SHA-256 of the normalized email)."
        ),
        owners=[spec.owner],
        kinds={"duckdb"},
        tags=_tags(loaded),
        metadata={
            **_definition_metadata(loaded),
            "dagster/column_schema": AUDIENCE_SCHEMA,
            "dagster/column_lineage": audience_column_lineage(),
        },
        pool=DUCKDB_POOL,
    )
    def _audience(
        context: dg.AssetExecutionContext, config: RunConfig, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        as_of = resolve_as_of(config)
        with warehouse.get_connection() as con:
            stats = build_audience(
                con,
                segment=sid,
                purpose=spec.purpose,
                legal_basis=spec.legal_basis,
                purposes=project.purposes,
                as_of=as_of,
            )
        excluded = {reason: stats.excluded.get(reason, 0) for reason in EXCLUSION_REASONS}
        context.log.info(
            f"audience {sid}: {stats.members} members, {sum(excluded.values())} excluded"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.members,
                "excluded_total": sum(excluded.values()),
                **{f"excluded_{reason}": count for reason, count in excluded.items()},
                "as_of": as_of.isoformat(),
                "dagster/column_schema": AUDIENCE_SCHEMA,
                "dagster/column_lineage": audience_column_lineage(),
            }
        )

    return _audience
