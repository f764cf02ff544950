"""The record of processing activities a DPO can file (GDPR Article 30(1)(a)-(g)), organised
per purpose: one processing activity per declared purpose that a segment uses, the segments
(campaigns) as its detail, every recipient with its legal entity, role, country, transfer
safeguard and agreement reference (``activation.yaml``), the controller with its DPO and EU
representative, and the record's version, date and history.

Built from :func:`orchestrator.privacy.register.register_activities` (one entry per segment),
so what each campaign uses is derived the same way. Exports: :func:`render_record_markdown`,
:func:`render_record_csv` (one row per purpose and recipient, every Art. 30(1) field filled)
and :func:`render_record_html` (a printable A4 page). The version is a digest of the record's
content (the same inputs give the same version); the date and history come from git, the
commits that changed the segment files or ``activation.yaml``, when the project is a git
checkout, else the date is today's and the history is empty. The register asset adds what
changed since its previous materialization (:func:`record_changes`).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config import Contact, ProjectConfig, RecipientRole
from orchestrator.csv_output import csv_writer
from orchestrator.privacy.register import Activity, register_activities, security_measures

_ROLE_TEXT = {
    RecipientRole.PROCESSOR: "processor (Art. 28)",
    RecipientRole.JOINT_CONTROLLER: "joint controller (Art. 26)",
}
NOT_DECLARED = "not declared in activation.yaml"
#: One row per (purpose, recipient) in the CSV export.
RECORD_CSV_COLUMNS: tuple[str, ...] = (
    "record_version",
    "record_date",
    "controller",
    "controller_contact",
    "dpo",
    "eu_representative",
    "purpose",
    "purpose_description",
    "legal_bases",
    "data_subjects",
    "personal_data",
    "recipient",
    "recipient_legal_entity",
    "recipient_role",
    "recipient_country",
    "transfer_safeguard",
    "agreement_reference",
    "time_limits",
    "security_measures",
    "campaigns",
)


@dataclass(frozen=True)
class Recipient:
    """A destination as the register names it (every field text)."""

    name: str
    legal_entity: str
    role: str
    country: str
    transfer_safeguard: str
    agreement: str


@dataclass(frozen=True)
class PurposeRecord:
    """One processing activity (a purpose): (b) ``purpose``/``description``, ``legal_bases``,
    (c) ``data_subjects`` and ``personal_data``, (d)-(e) ``recipients``, (f) ``time_limits``,
    and the ``campaigns`` (segments) carrying it out."""

    purpose: str
    description: str
    legal_bases: tuple[str, ...]
    data_subjects: tuple[str, ...]
    personal_data: tuple[str, ...]
    recipients: tuple[Recipient, ...]
    time_limits: tuple[str, ...]
    campaigns: tuple[Activity, ...]


@dataclass(frozen=True)
class Record:
    """The whole record: controller (a), ``activities`` per purpose, security measures (g),
    ``version`` (``v-`` + 10 hex of the content digest), ``date`` (ISO), ``history`` (one line
    per change of the inputs, newest first)."""

    controller: str
    controller_contact: str
    dpo: str
    eu_representative: str
    activities: tuple[PurposeRecord, ...]
    security: tuple[str, ...]
    version: str
    date: str
    history: tuple[str, ...] = field(default=())


def _contact(contact: Contact | None) -> str:
    if contact is None:
        return NOT_DECLARED
    parts = [contact.name, contact.address, contact.contact]
    return ", ".join(part for part in parts if part)


def _recipient(name: str, project: ProjectConfig) -> Recipient:
    dest = project.destinations[name]
    return Recipient(
        name=f"{name} ({dest.platform}, {dest.kind} platform)",
        legal_entity=dest.legal_entity or NOT_DECLARED,
        role=_ROLE_TEXT[dest.role],
        country=dest.country,
        transfer_safeguard=dest.transfer_safeguard,
        agreement=dest.dpa_reference or NOT_DECLARED,
    )


def _data_order(item: str) -> int:
    """Addresses first, then what selects, what is sent, consent records, requests."""
    for rank, start in enumerate(("email", "used to select", "sent to", "consent")):
        if item.startswith(start):
            return rank
    return 4


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _purpose_record(
    purpose: str, campaigns: list[Activity], project: ProjectConfig
) -> PurposeRecord:
    declared = project.purposes[purpose]
    destinations = sorted({d for a in campaigns for d in a.destinations})
    days = sorted({a.retention_days for a in campaigns})
    return PurposeRecord(
        purpose=purpose,
        description=declared.description,
        legal_bases=_unique(a.legal_basis for a in campaigns),
        data_subjects=_unique(part for a in campaigns for part in a.data_subjects.split("; ")),
        personal_data=tuple(
            sorted(_unique(i for a in campaigns for i in a.personal_data), key=_data_order)
        ),
        recipients=tuple(_recipient(d, project) for d in destinations),
        time_limits=(
            f"removed from recipients at most {days[-1]} days after leaving a campaign "
            f"(per campaign: {', '.join(f'{d} days' for d in days)})",
            *campaigns[0].retention[1:],
        ),
        campaigns=tuple(campaigns),
    )


def _digest(activities: tuple[PurposeRecord, ...], controller: tuple[str, ...]) -> str:
    payload = json.dumps([controller, [asdict(a) for a in activities]], sort_keys=True)
    return "v-" + hashlib.sha256(payload.encode()).hexdigest()[:10]


def git_history(project_dir: Path, paths: Iterable[Path], limit: int = 10) -> list[str]:
    """``YYYY-MM-DD <commit> <subject>`` of the last ``limit`` commits touching ``paths``,
    newest first; empty outside a git checkout or without git."""
    try:
        done = subprocess.run(
            ["git", "log", f"-n{limit}", "--format=%cs %h %s", "--", *map(str, paths)],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.splitlines() if done.returncode == 0 else []


def build_record(
    project: ProjectConfig,
    specs: object,
    *,
    history: Iterable[str] = (),
    today: datetime | None = None,
) -> Record:
    """The :class:`Record` for the segments in ``specs`` (as
    :func:`~orchestrator.privacy.register.register_activities` takes them). ``history``:
    newest-first change lines (:func:`git_history`); the date is the newest line's date, else
    ``today`` (default: now, UTC).

    Raises:
        KeyError: a segment names a purpose or destination absent from ``project``.
    """
    by_purpose: dict[str, list[Activity]] = {}
    for activity in register_activities(project, specs):  # type: ignore[arg-type]
        by_purpose.setdefault(activity.purpose, []).append(activity)
    activities = tuple(
        _purpose_record(purpose, by_purpose[purpose], project) for purpose in sorted(by_purpose)
    )
    c = project.controller
    head = (
        _contact(Contact(name=c.name, address=c.address, contact="")),
        c.contact,
        _contact(c.dpo),
        _contact(c.eu_representative),
    )
    lines = tuple(history)
    date = lines[0][:10] if lines else (today or datetime.now(UTC)).date().isoformat()
    return Record(
        *head, activities, security_measures(project), _digest(activities, head), date, lines
    )


def record_changes(previous: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """What changed between two ``{section: digest}`` maps (:func:`section_digests`): added,
    removed and changed sections, e.g. ``["added campaign winter_prospects"]``."""
    changes = [f"added {name}" for name in sorted(set(current) - set(previous))]
    changes += [f"removed {name}" for name in sorted(set(previous) - set(current))]
    changes += [
        f"changed {name}"
        for name in sorted(set(current) & set(previous))
        if current[name] != previous[name]
    ]
    return changes


def section_digests(record: Record) -> dict[str, str]:
    """A digest per section of the record (controller, each purpose, each campaign, each
    recipient), for :func:`record_changes`."""

    def digest(value: object) -> str:
        text = json.dumps(value, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    sections = {"controller": digest([record.controller, record.dpo, record.eu_representative])}
    for a in record.activities:
        sections[f"purpose {a.purpose}"] = digest([a.description, a.legal_bases, a.time_limits])
        for campaign in a.campaigns:
            sections[f"campaign {campaign.name}"] = digest(asdict(campaign))
        for r in a.recipients:
            sections[f"recipient {r.name}"] = digest(asdict(r))
    return sections


# --- Markdown -------------------------------------------------------------------------------


def _md_purpose(a: PurposeRecord) -> list[str]:
    lines = [
        f"## Processing activity: {a.purpose}",
        "",
        f"- **(b) Purpose**: {a.description}",
        f"- **Legal basis (Art. 6(1))**: {'; '.join(a.legal_bases)}",
        f"- **(c) Data subjects**: {'; '.join(a.data_subjects)}",
        "- **(c) Personal data**:",
        *[f"  - {item}" for item in a.personal_data],
        "- **(d) Recipients** and **(e) transfers to third countries**:",
        "",
        "| Recipient | Legal entity | Role | Country | Transfer safeguard | Agreement |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r.name} | {r.legal_entity} | {r.role} | {r.country} | {r.transfer_safeguard} "
            f"| {r.agreement} |"
            for r in a.recipients
        ],
        "",
        "- **(f) Time limits for erasure**:",
        *[f"  - {item}" for item in a.time_limits],
        "- **(g) Security measures**: see the section below.",
        "",
        f"### Campaigns carrying out {a.purpose} (detail)",
        "",
        "| Campaign | Description | Legal basis | Recipients | Retention after leaving | Owner "
        "| Defined in |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {c.name} | {c.description} | {c.legal_basis_code} | {', '.join(c.destinations)} "
            f"| {c.retention_days} days | {c.owner} | `{c.source_file or 'n/a'}` |"
            for c in a.campaigns
        ],
        "",
    ]
    return lines


def render_record_markdown(record: Record) -> str:
    """The record as Markdown (headings per purpose, tables for recipients and campaigns)."""
    lines = [
        "# Record of processing activities (GDPR Article 30(1))",
        "",
        f"Version **{record.version}**, dated {record.date}.",
        "",
        "## (a) Controller",
        "",
        f"- **Controller**: {record.controller} (contact: {record.controller_contact})",
        f"- **Data protection officer**: {record.dpo}",
        f"- **Representative in the Union (Art. 27)**: {record.eu_representative}",
        "",
    ]
    for activity in record.activities:
        lines += _md_purpose(activity)
    lines += ["## (g) Security measures (Art. 32)", ""]
    lines += [f"- {measure}" for measure in record.security]
    lines += ["", "## History of this record", ""]
    lines += [f"- {line}" for line in record.history] or ["- no earlier version recorded"]
    return "\n".join(lines) + "\n"


# --- CSV ------------------------------------------------------------------------------------


def render_record_csv(record: Record) -> str:
    """The record as CSV (header :data:`RECORD_CSV_COLUMNS`): one row per purpose and
    recipient, every Art. 30(1) field filled; multi-valued cells joined with ``"; "``."""
    out = io.StringIO()
    writer = csv_writer(out)  # formula-like cells neutralized (orchestrator.csv_output)
    writer.writerow(RECORD_CSV_COLUMNS)
    for a in record.activities:
        for r in a.recipients:
            row = [
                record.version,
                record.date,
                record.controller,
                record.controller_contact,
                record.dpo,
                record.eu_representative,
                a.purpose,
                a.description,
                "; ".join(a.legal_bases),
                "; ".join(a.data_subjects),
                "; ".join(a.personal_data),
                r.name,
                r.legal_entity,
                r.role,
                r.country,
                r.transfer_safeguard,
                r.agreement,
                "; ".join(a.time_limits),
                " ".join(record.security),
                "; ".join(c.name for c in a.campaigns),
            ]
            writer.writerow(row)
    return out.getvalue()


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
@page { size: A4; margin: 18mm 16mm; }
body { font: 10.5pt/1.45 "DejaVu Sans", Arial, sans-serif; color: #1d2330; max-width: 190mm;
       margin: 0 auto; padding: 12px; }
h1 { font-size: 19pt; margin: 0 0 2px; }
h2 { font-size: 13.5pt; margin: 22px 0 6px; padding-bottom: 3px; border-bottom: 2px solid #2f5d8a;
     color: #1f3f63; page-break-after: avoid; }
h3 { font-size: 11pt; margin: 14px 0 4px; color: #1f3f63; }
.meta { color: #555; margin: 0 0 14px; }
dl { display: grid; grid-template-columns: 44mm 1fr; gap: 3px 10px; margin: 6px 0; }
dt { font-weight: bold; color: #333; } dd { margin: 0; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 9pt;
        page-break-inside: avoid; }
th, td { border: 1px solid #b9c3cf; padding: 4px 6px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #e8eef5; }
section.activity { page-break-inside: avoid; }
ul { margin: 2px 0 2px 18px; padding: 0; }
.ref { font-family: "DejaVu Sans Mono", monospace; font-size: 8.5pt; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _ul(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _html_purpose(a: PurposeRecord) -> str:
    recipients = "".join(
        f"<tr><td>{_e(r.name)}</td><td>{_e(r.legal_entity)}</td><td>{_e(r.role)}</td>"
        f"<td>{_e(r.country)}</td><td>{_e(r.transfer_safeguard)}</td><td>{_e(r.agreement)}</td>"
        "</tr>"
        for r in a.recipients
    )
    campaigns = "".join(
        f"<tr><td>{_e(c.name)}</td><td>{_e(c.description)}</td><td>{_e(c.legal_basis_code)}</td>"
        f"<td>{_e(', '.join(c.destinations))}</td><td>{c.retention_days} days</td>"
        f"<td>{_e(c.owner)}</td><td class='ref'>{_e(c.source_file or 'n/a')}</td></tr>"
        for c in a.campaigns
    )
    return f"""
<section class="activity">
<h2>Processing activity: {_e(a.purpose)}</h2>
<dl>
<dt>(b) Purpose</dt><dd>{_e(a.description)}</dd>
<dt>Legal basis (Art. 6(1))</dt><dd>{_ul(a.legal_bases)}</dd>
<dt>(c) Data subjects</dt><dd>{_ul(a.data_subjects)}</dd>
<dt>(c) Personal data</dt><dd>{_ul(a.personal_data)}</dd>
<dt>(f) Time limits</dt><dd>{_ul(a.time_limits)}</dd>
<dt>(g) Security</dt><dd>see "Security measures" below</dd>
</dl>
<h3>(d) Recipients and (e) transfers to third countries</h3>
<table><tr><th>Recipient</th><th>Legal entity</th><th>Role</th><th>Country</th>
<th>Transfer safeguard</th><th>Agreement</th></tr>{recipients}</table>
<h3>Campaigns carrying out this purpose (detail)</h3>
<table><tr><th>Campaign</th><th>Description</th><th>Basis</th><th>Recipients</th>
<th>Retention after leaving</th><th>Owner</th><th>Defined in</th></tr>{campaigns}</table>
</section>"""


def render_record_html(record: Record) -> str:
    """The record as one printable HTML page (A4, no external resources)."""
    body = "".join(_html_purpose(a) for a in record.activities)
    history = _ul(record.history or ["no earlier version recorded"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Record of processing activities {_e(record.version)}</title>
<style>{_CSS}</style></head>
<body>
<h1>Record of processing activities</h1>
<p class="meta">GDPR Article 30(1) &middot; version <b>{_e(record.version)}</b> &middot;
dated {_e(record.date)}</p>
<h2>(a) Controller</h2>
<dl>
<dt>Controller</dt><dd>{_e(record.controller)} (contact: {_e(record.controller_contact)})</dd>
<dt>Data protection officer</dt><dd>{_e(record.dpo)}</dd>
<dt>Representative in the Union</dt><dd>{_e(record.eu_representative)} (Art. 27)</dd>
</dl>
{body}
<h2>(g) Security measures (Art. 32)</h2>
{_ul(record.security)}
<h2>History of this record</h2>
{history}
</body></html>
"""
