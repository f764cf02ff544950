"""The "model" a user of a naive tool would write: one plain SQL SELECT of who may be sent.

It is the segment's compiled query (:func:`orchestrator.segments.compiler.compile_segment`)
joined with a straightforward consent filter, written without any of the product's tables
(``activation.segment_members``, ``activation.audience_members``). Rows: one per eligible
customer, columns ``customer_id`` BIGINT, ``email`` VARCHAR (raw, as the CRM holds it), then the
merge-field columns of ``customers`` in the order given. Rules, all dated at ``as_of`` (records
after it are ignored):

- in the segment (the compiled query);
- consent, per address (``lower(trim(email))``: every customer row of one address is one
  person): the latest ``consents`` row for the purpose (``recorded_at`` descending, a
  withdrawal before a grant at the same instant, then ``consent_id`` descending) is
  ``granted``, has a non-blank ``source`` and ``notice_version`` (plain ``trim``) and was
  recorded after ``as_of - consent_validity_days`` (legal basis ``consent`` only: no soft
  opt-in); and no other marketing purpose's latest row at the address is a withdrawal
  recorded at or after that grant;
- no ``erasure`` or ``objection`` privacy request matched by the ``customer_id`` of any row of
  the address and received by ``as_of``;
- source retention not expired: the later of the last purchase (or, without one, ``created_at``)
  and ``last_contact_at`` is after the cutoff of its kind (customer / prospect), as
  :mod:`orchestrator.privacy.retention` defines it.

What needs the email's key (invalid address, two customers with one address, requests and
suppressions matched by key) is left to the caller, who hashes: see :mod:`bench.end_to_end`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.config import LegalBasis, ProjectConfig
from orchestrator.consent import segment_counted_purposes
from orchestrator.privacy.retention import retention_params
from orchestrator.segments.compiler import compile_segment
from orchestrator.segments.spec import SegmentSpec
from orchestrator.warehouse.schema import SOURCE_COLUMNS

#: Privacy request types that keep a person out of every audience (GDPR Art. 17 and 21).
BLOCKING_REQUESTS: tuple[str, ...] = ("erasure", "objection")

_MODEL_SQL = """
WITH segment AS (
{segment}
),
address AS (
    -- one address, one person: the bench's addresses are ASCII, so trim + lowercase is
    -- their normalized form
    SELECT customer_id, lower(trim(email)) AS address FROM customers WHERE email IS NOT NULL
),
latest_consent AS (
    SELECT a.address, c.purpose, c.status, c.source, c.notice_version, c.recorded_at
    FROM consents AS c JOIN address AS a USING (customer_id)
    WHERE list_contains(?, c.purpose) AND c.recorded_at <= ?
    QUALIFY row_number() OVER (
        PARTITION BY a.address, c.purpose
        ORDER BY c.recorded_at DESC, (c.status = 'granted') ASC, c.consent_id DESC) = 1
),
last_purchase AS (
    SELECT customer_id, max(occurred_at) AS last_purchase_at
    FROM events
    WHERE event_type = 'purchase' AND occurred_at <= ?
    GROUP BY customer_id
)
SELECT c.customer_id, c.email{fields}
FROM segment AS s
JOIN customers AS c ON c.customer_id = s.customer_id
JOIN address AS a ON a.customer_id = c.customer_id
JOIN latest_consent AS l ON l.address = a.address AND l.purpose = ?
LEFT JOIN last_purchase AS p ON p.customer_id = c.customer_id
WHERE l.status = 'granted'
  AND trim(l.source) <> '' AND trim(l.notice_version) <> ''
  AND l.recorded_at > ?
  AND NOT EXISTS (
      SELECT 1 FROM latest_consent AS o
      WHERE o.address = a.address AND o.purpose <> l.purpose AND o.status <> 'granted'
        AND o.recorded_at >= l.recorded_at)
  AND NOT EXISTS (
      SELECT 1 FROM privacy_requests AS r JOIN address AS ra USING (customer_id)
      WHERE ra.address = a.address AND list_contains(?, r.request_type)
        AND r.received_at <= ?)
  AND coalesce(
      greatest(coalesce(p.last_purchase_at, c.created_at),
               CASE WHEN c.last_contact_at <= ? THEN c.last_contact_at END)
        > CASE WHEN p.last_purchase_at IS NULL THEN ? ELSE ? END,
      true)
"""


@dataclass(frozen=True)
class ModelQuery:
    """One SELECT with positional ``?`` parameters; ``columns`` names its result columns."""

    sql: str
    params: list[Any]
    columns: tuple[str, ...]


def _field_columns(columns: Sequence[str]) -> str:
    allowed = SOURCE_COLUMNS["customers"]
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise ValueError(f"not columns of customers: {unknown}")
    return "".join(f', c."{c}"' for c in columns)


def model_query(
    spec: SegmentSpec, project: ProjectConfig, as_of: datetime, columns: Sequence[str] = ()
) -> ModelQuery:
    """The model of ``spec`` at ``as_of`` (naive UTC) as one SELECT (see module docstring).

    ``columns``: ``customers`` columns to return after ``customer_id`` and ``email`` (merge
    fields), checked against the schema.

    Raises:
        ValueError: the segment's legal basis is not ``consent`` (the model has no soft
            opt-in), or a column is not a ``customers`` column.
    """
    if LegalBasis(spec.legal_basis) is not LegalBasis.CONSENT:
        raise ValueError(f"the naive model handles legal basis consent only: {spec.legal_basis}")
    segment = compile_segment(spec, as_of)
    validity = project.purposes[spec.purpose].consent_validity_days
    clock = retention_params(project.retention, as_of)
    sql = _MODEL_SQL.format(segment=segment.sql, fields=_field_columns(columns))
    params = [
        *segment.params,
        segment_counted_purposes(spec, project),
        as_of,
        as_of,
        spec.purpose,
        as_of - timedelta(days=validity),
        list(BLOCKING_REQUESTS),
        as_of,
        as_of,
        clock["prospect_cutoff"],
        clock["customer_cutoff"],
    ]
    return ModelQuery(sql, params, ("customer_id", "email", *columns))


__all__ = ["BLOCKING_REQUESTS", "ModelQuery", "model_query"]
