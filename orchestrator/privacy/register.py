"""The GDPR Article 30(1) record of processing activities, generated from the segment files and
``activation.yaml``: one processing activity per segment, so adding a segment file adds its
entry with no other edit.

For each activity, the items of Art. 30(1): (a) the controller and its contact; (b) the purpose;
(c) the categories of data subjects (customers, prospects) and of personal data, derived from
the fields the segment actually uses (its conditions or SQL, the merge fields it sends, the
email address, pseudonymized for ad platforms); (d) the recipients (each destination and its
country); (e) transfers to third countries and their safeguard; (f) the time limits for erasure
(the segment's ``retention_days``, the purpose's consent validity, source retention); (g) the
security measures (Art. 32: pseudonymization, minimization, secrets from the environment).
The legal basis (Art. 6(1)) is recorded too, as regulators expect beside the purpose.

:func:`render_register_markdown` and :func:`render_register_csv` are the exports (the
``activation register`` command calls them); :func:`build_register_asset` shows the same
Markdown in the Dagster UI as asset ``privacy/processing_register``.
"""

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from orchestrator.config import DestinationKind, LegalBasis, ProjectConfig
from orchestrator.consent_signals import signals_for
from orchestrator.csv_output import csv_writer
from orchestrator.privacy.reads import segment_reads
from orchestrator.segments.loader import LoadedSegment
from orchestrator.segments.sensitive import categories_used
from orchestrator.segments.spec import (
    AllCondition,
    AnyCondition,
    EventCondition,
    SegmentSpec,
)

REGISTER_KEY = dg.AssetKey(["privacy", "processing_register"])

SECURITY_MEASURES: tuple[str, ...] = (
    "Pseudonymization: the email is normalized then hashed with SHA-256 before any upload to an "
    "ad platform; ad platforms receive the hash only (checked before every sync: "
    "no_raw_identifier).",
    "Minimization: segments may not use the email as a condition or field (sql: segments "
    "included: a reference to an email column is refused); only the mapped merge "
    "fields are sent to email platforms; consent, objections and erasures are applied before "
    "every sync (blocking check legal_basis_valid).",
    "Access tokens and base URLs are read from environment variables at run time, never written "
    "in configuration files or logs.",
    "Personal data stay in the warehouse; logs and run metadata hold counts and hash prefixes, "
    "never an address.",
    "The product's own key cache (activation.customer_keys: normalized address and hashes) "
    "holds only customers a segment selected or whose requests decide a removal; a row goes "
    "when the source row or its address changes, and on erasure.",
)


_BASIS_TEXT = {
    LegalBasis.CONSENT: "Consent, GDPR Art. 6(1)(a)",
    LegalBasis.LEGITIMATE_INTEREST: (
        "Legitimate interest, GDPR Art. 6(1)(f): soft opt-in for existing customers (ePrivacy "
        "Directive Art. 13(2)); a valid consent is used when given"
    ),
}

CSV_COLUMNS: tuple[str, ...] = (
    "activity",
    "description",
    "controller",
    "controller_contact",
    "owner",
    "purpose",
    "purpose_description",
    "legal_basis",
    "data_subjects",
    "personal_data",
    "recipients",
    "third_country_transfers",
    "retention",
    "security_measures",
    "source_file",
)


def security_measures(project: ProjectConfig) -> tuple[str, ...]:
    """:data:`SECURITY_MEASURES` naming the schema the project keeps its own tables in
    (``warehouse.product_schema``, apart from the company's tables)."""
    schema = project.product_schema
    return tuple(m.replace("(activation.", f"({schema}.") for m in SECURITY_MEASURES)


@dataclass(frozen=True)
class Activity:
    """One processing activity (a segment) as the register states it; every field is text.

    ``recipients`` and ``transfers``: one line per destination. ``retention``: one line per
    limit. ``personal_data``: categories, in a stable order. ``legal_basis_code``: ``consent``
    or ``legitimate_interest``; ``destinations``: destination names; ``retention_days``: days a
    member may stay in a destination after leaving.
    """

    name: str
    description: str
    owner: str
    purpose: str
    purpose_description: str
    legal_basis: str
    data_subjects: str
    personal_data: tuple[str, ...]
    recipients: tuple[str, ...]
    transfers: tuple[str, ...]
    retention: tuple[str, ...]
    source_file: str
    legal_basis_code: str
    destinations: tuple[str, ...]
    retention_days: int


def _requires_purchase(condition: object, purchase: str) -> bool:
    """True when every member must have a purchase (the model's ``purchase`` event type; then
    the subjects are customers only)."""
    if isinstance(condition, EventCondition):
        return condition.event == purchase
    if isinstance(condition, AllCondition):
        return any(_requires_purchase(child, purchase) for child in condition.all_)
    if isinstance(condition, AnyCondition):
        return all(_requires_purchase(child, purchase) for child in condition.any_)
    return False


def _personal_data(spec: SegmentSpec, project: ProjectConfig) -> tuple[str, ...]:
    kinds = {project.destinations[e.destination].kind for e in spec.destinations}
    items: list[str] = []
    if DestinationKind.AD in kinds:
        items.append("email address, pseudonymized (SHA-256) for ad platforms")
    if DestinationKind.EMAIL in kinds:
        items.append("email address (sent to email platforms for delivery)")
    used = segment_reads(spec, project.source, project.catalog)
    items += [f"used to select: {label}" for label in used]
    for entry in spec.destinations:
        for tag, trait in sorted(entry.fields.items()):
            items.append(f"sent to {entry.destination} as {tag}: {trait}")
    items.append(f"consent records for {spec.purpose} (status, date, source, notice version)")
    items.append("erasure and objection requests")
    categories = categories_used(spec, project.source.sensitive)
    items.append(
        "special categories of data (GDPR Art. 9): "
        + (", ".join(categories) if categories else "none")
    )
    return tuple(items)


def _recipients(spec: SegmentSpec, project: ProjectConfig) -> tuple[tuple[str, ...], ...]:
    recipients, transfers = [], []
    for entry in spec.destinations:
        dest = project.destinations[entry.destination]
        signals = signals_for(project, spec.purpose, dest.platform)
        sent = (
            "; consent signals sent: "
            + ", ".join(
                f"{s.name} (granted by a valid consent for {s.purpose}, else denied)"
                for s in signals
            )
            + (
                " to members of the EEA, the UK, Switzerland or an unknown country (none to a"
                " known country outside them)"
            )
        )
        recipients.append(
            f"{entry.destination} ({dest.platform}, {dest.kind} platform, audience "
            f"{entry.audience_id}, mode {entry.mode}; country {dest.country}"
            f"{sent if signals else ''})"
        )
        transfers.append(f"{entry.destination} -> {dest.country}: {dest.transfer_safeguard}")
    return tuple(recipients), tuple(transfers)


def _retention(spec: SegmentSpec, project: ProjectConfig) -> tuple[str, ...]:
    purpose = project.purposes[spec.purpose]
    source = project.retention
    return (
        f"removed from destinations at most {spec.retention_days} days after leaving the segment",
        f"consent for {spec.purpose} counts for {purpose.consent_validity_days} days",
        f"source records used for {source.prospect_days} days after collection or last contact "
        f"(prospects), {source.customer_days} days after last purchase or contact (customers)",
    )


def _pairs(specs: object) -> list[tuple[SegmentSpec, str]]:
    if isinstance(specs, Mapping):
        specs = list(specs.values())
    pairs = []
    for item in specs:  # type: ignore[union-attr]
        if isinstance(item, LoadedSegment):
            # folder/file, not the absolute path: the register is shared beyond this machine
            pairs.append((item.spec, f"{item.path.parent.name}/{item.path.name}"))
        else:
            pairs.append((item, ""))
    return sorted(pairs, key=lambda pair: pair[0].id)


def register_activities(
    project: ProjectConfig,
    specs: Mapping[str, LoadedSegment] | Iterable[LoadedSegment | SegmentSpec],
) -> list[Activity]:
    """One :class:`Activity` per segment, sorted by segment id.

    ``specs``: ``load_segments(...).specs`` (id -> LoadedSegment), or LoadedSegment or
    SegmentSpec objects (a bare SegmentSpec has no source file).

    Raises:
        KeyError: a segment names a purpose or destination absent from ``project``.
    """
    activities = []
    for spec, source_file in _pairs(specs):
        purpose = project.purposes[spec.purpose]
        recipients, transfers = _recipients(spec, project)
        purchase = project.source.purchase_event
        subjects = (
            "customers (at least one purchase)"
            if spec.audience is not None and _requires_purchase(spec.audience, purchase)
            else "customers (at least one purchase); prospects (no purchase yet)"
        )
        activities.append(
            Activity(
                name=spec.id,
                description=spec.description,
                owner=spec.owner,
                purpose=spec.purpose,
                purpose_description=purpose.description,
                legal_basis=_BASIS_TEXT[LegalBasis(spec.legal_basis)],
                data_subjects=subjects,
                personal_data=_personal_data(spec, project),
                recipients=recipients,
                transfers=transfers,
                retention=_retention(spec, project),
                source_file=source_file,
                legal_basis_code=str(spec.legal_basis),
                destinations=tuple(e.destination for e in spec.destinations),
                retention_days=spec.retention_days,
            )
        )
    return activities


def _md_activity(activity: Activity) -> list[str]:
    def bullets(items: Iterable[str]) -> list[str]:
        return [f"  - {item}" for item in items]

    return [
        f"### {activity.name}",
        "",
        f"{activity.description}",
        "",
        f"- **Purpose (30(1)(b))**: {activity.purpose} — {activity.purpose_description}",
        f"- **Legal basis**: {activity.legal_basis}",
        f"- **Data subjects (30(1)(c))**: {activity.data_subjects}",
        "- **Personal data (30(1)(c))**:",
        *bullets(activity.personal_data),
        "- **Recipients (30(1)(d))**:",
        *bullets(activity.recipients),
        "- **Transfers to third countries and safeguards (30(1)(e))**:",
        *bullets(activity.transfers),
        "- **Time limits for erasure (30(1)(f))**:",
        *bullets(activity.retention),
        f"- **Owner**: {activity.owner}",
        f"- **Defined in**: `{activity.source_file or 'n/a'}`",
        "",
    ]


def render_register_markdown(
    project: ProjectConfig,
    specs: Mapping[str, LoadedSegment] | Iterable[LoadedSegment | SegmentSpec],
) -> str:
    """The register as Markdown: controller, a summary table, one section per activity and the
    security measures (30(1)(g)). ``specs`` as in :func:`register_activities`."""
    activities = register_activities(project, specs)
    controller = project.controller
    lines = [
        "# Record of processing activities (GDPR Article 30(1))",
        "",
        f"**Controller (30(1)(a))**: {controller.name}"
        + (f", {controller.address}" if controller.address else "")
        + f" — contact: {controller.contact}",
        "",
        "| Activity | Purpose | Legal basis | Recipients | Retention after leaving |",
        "|---|---|---|---|---|",
    ]
    for a in activities:
        names = ", ".join(a.destinations)
        lines.append(
            f"| {a.name} | {a.purpose} | {a.legal_basis_code} | {names} | {a.retention_days} days |"
        )
    lines += ["", "## Processing activities", ""]
    for activity in activities:
        lines += _md_activity(activity)
    lines += ["## Security measures (30(1)(g), Art. 32)", ""]
    lines += [f"- {measure}" for measure in security_measures(project)]
    return "\n".join(lines) + "\n"


def render_register_csv(
    project: ProjectConfig,
    specs: Mapping[str, LoadedSegment] | Iterable[LoadedSegment | SegmentSpec],
) -> str:
    """The register as CSV (RFC 4180, header :data:`CSV_COLUMNS`), one row per processing
    activity; multi-valued cells join their items with ``"; "``. Cells that a spreadsheet would
    read as a formula are neutralized (:mod:`orchestrator.csv_output`)."""
    out = io.StringIO()
    writer = csv_writer(out)
    writer.writerow(CSV_COLUMNS)
    controller = project.controller
    for a in register_activities(project, specs):
        writer.writerow(
            [
                a.name,
                a.description,
                controller.name,
                controller.contact,
                a.owner,
                a.purpose,
                a.purpose_description,
                a.legal_basis,
                a.data_subjects,
                "; ".join(a.personal_data),
                "; ".join(a.recipients),
                "; ".join(a.transfers),
                "; ".join(a.retention),
                " ".join(security_measures(project)),  # each ends with a period
                a.source_file,
            ]
        )
    return out.getvalue()


def build_register_asset(
    specs: Mapping[str, LoadedSegment], project: ProjectConfig, project_dir: Path | None = None
) -> dg.AssetsDefinition:
    """Asset ``privacy/processing_register`` (group ``privacy``): the record a DPO files
    (:mod:`orchestrator.privacy.record`, per purpose) as the asset description, and on each
    materialization as ``register`` Markdown metadata with ``version``, ``date``, the history
    of the inputs from git (``project_dir``) and ``changes`` since the previous
    materialization (its ``sections`` digests), plus the ``activities`` (campaigns) count."""
    from orchestrator.privacy.record import (
        build_record,
        git_history,
        record_changes,
        render_record_markdown,
        section_digests,
    )

    count = len(specs)
    description = render_record_markdown(build_record(project, specs))

    @dg.asset(
        key=REGISTER_KEY,
        group_name="privacy",
        description=description,
        kinds={"markdown"},
        metadata={"activities": count, "controller": project.controller.name},
    )
    def _register(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        inputs = [Path("segments"), Path("activation.yaml")]
        history = git_history(project_dir, inputs) if project_dir else []
        record = build_record(project, specs, history=history)
        sections = section_digests(record)
        previous = context.instance.get_latest_materialization_event(REGISTER_KEY)
        before = {}
        if previous is not None and previous.asset_materialization is not None:
            value = previous.asset_materialization.metadata.get("sections")
            before = dict(getattr(value, "value", None) or {})
        changes = record_changes(before, sections) if before else ["first version recorded"]
        context.log.info(f"processing register {record.version}: {count} campaigns")
        return dg.MaterializeResult(
            metadata={
                "register": dg.MetadataValue.md(render_record_markdown(record)),
                "activities": count,
                "version": record.version,
                "date": record.date,
                "changes": dg.MetadataValue.md(
                    "\n".join(f"- {c}" for c in changes) or "- no change"
                ),
                "sections": dg.MetadataValue.json(sections),
            }
        )

    return _register


__all__ = [
    "CSV_COLUMNS",
    "REGISTER_KEY",
    "Activity",
    "build_register_asset",
    "register_activities",
    "render_register_csv",
    "render_register_markdown",
]
