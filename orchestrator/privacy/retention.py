"""Retention, in SQL: how long a person's source records may feed an audience, and how long a
member may stay in a destination after leaving its segment (GDPR Art. 5(1)(e)).

Source retention (the CNIL's reference for commercial prospection: "Référentiel relatif aux
traitements de données à caractère personnel mis en œuvre aux fins de gestion des activités
commerciales", 2021 — 3 years from collection or the last contact coming from a prospect, 3
years from the end of the commercial relationship for a customer; durations configurable in
``activation.yaml`` under ``retention``):

- a *customer* (at least one purchase, the model's ``purchase_event``, at or before ``as_of``):
  the clock starts at the later of their last own-action event and their last own-action
  column value at or before ``as_of`` (``activation.src_customers.own_action_times``); expired after
  ``customer_days``;
- a *prospect* (no purchase): the clock starts at the later of collection (the model's
  ``collected_at``), their last own-action event and column; expired after ``prospect_days``.

Only an action of the person moves the clock: the event types and customer columns the source
model declares as own actions (``own_action_events``, ``own_action_columns``: an order, a
click on a link, a reply; the CNIL does not count an email open). An import, a CRM update or a
re-load of the row never does: a column not declared an own action (an import time, an
``updated_at``) is never read here. For a customer, the collection date is not used either: a
row re-created by a migration must not restart the clock. Dates after ``as_of`` are ignored,
column by column before the latest is taken (``src_customers.own_action_times``): a
future-dated column never hides an older valid one. A
clock exactly ``days`` old is expired (as for consent).

Destination retention: a member who leaves a segment may stay in a destination (modes
``upsert`` and ``add_only`` never remove for leaving) at most the segment's
``retention_days``. ``activation.departures`` (segment, destination, subject_key, left_at)
records when each acknowledged member was first seen absent from the audience; it is maintained
by :func:`track_departures` (run by the ``destination_retention`` check after each sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.config import SourceRetention
from orchestrator.warehouse.connection import WarehouseConnection
from orchestrator.warehouse.schema import create_activation_schema

_CLOCK_TEMPLATE = """
SELECT customer_id, is_customer, clock_at,
       coalesce(clock_at <= CASE WHEN is_customer THEN $customer_cutoff
                                 ELSE $prospect_cutoff END, false) AS expired
FROM (
    SELECT c.customer_id,
           coalesce(p.is_customer, false) AS is_customer,
           CASE WHEN coalesce(p.is_customer, false)
                THEN greatest(p.last_action_at, c.last_own_action_at)
                ELSE greatest(c.collected_at, p.last_action_at, c.last_own_action_at)
           END AS clock_at
    FROM (
        SELECT customer_id, collected_at,
               list_max(list_filter(own_action_times, lambda t: t <= $as_of))
                   AS last_own_action_at
        FROM activation.src_customers
    ) AS c
    LEFT JOIN {actions} AS p ON p.customer_id = c.customer_id{customers_scope}
)
"""


_LAST_ACTION_TEMPLATE = """(
        SELECT customer_id, bool_or(is_purchase) AS is_customer,
               max(occurred_at) AS last_action_at
        FROM activation.src_events
        WHERE own_action AND occurred_at <= $as_of{events_scope}
        GROUP BY customer_id
    )"""


def retention_clock_sql(within: str | None = None, last_actions: str | None = None) -> str:
    """The retention clock query, one row per customer: ``customer_id`` BIGINT,
    ``is_customer`` BOOLEAN (has a purchase), ``clock_at`` TIMESTAMP (the last action of the
    person that counts, NULL when none is known), ``expired`` BOOLEAN (``clock_at`` at or
    before the cutoff of its kind). Named parameters: ``$as_of``, ``$prospect_cutoff``,
    ``$customer_cutoff`` (naive UTC timestamps, see :func:`retention_params`).

    ``within``: the name of a relation (table or CTE, written by our code, never user input)
    with a ``customer_id`` column; when given, only those customers are clocked, and the
    purchases are filtered to them BEFORE the last purchase is aggregated (aggregating every
    customer then filtering cost 1.2 to 1.7 CPU s at 1M customers, bench/README.md). Rows of
    the customers kept are the same as without ``within``.

    ``last_actions``: the name of a relation (written by our code) with ``customer_id``,
    ``is_customer`` (has a purchase at or before ``$as_of``) and ``last_action_at`` (the
    latest own-action event at or before ``$as_of``), one row per customer who has one, at
    least every customer in scope, that the caller already computed; the clock then reads it
    instead of aggregating ``activation.src_events`` again.
    """
    scope = "" if within is None else f" IN (SELECT customer_id FROM {within})"
    events_scope = f"\n          AND customer_id{scope}" if scope else ""
    actions = last_actions or _LAST_ACTION_TEMPLATE.format(events_scope=events_scope)
    return _CLOCK_TEMPLATE.format(
        actions=actions,
        customers_scope=f"\n    WHERE c.customer_id{scope}" if scope else "",
    )


#: :func:`retention_clock_sql` for every customer.
RETENTION_CLOCK_SQL = retention_clock_sql()


def retention_params(retention: SourceRetention, as_of: datetime) -> dict[str, datetime]:
    """Named parameters of :data:`RETENTION_CLOCK_SQL` for ``as_of`` (naive UTC)."""
    return {
        "as_of": as_of,
        "prospect_cutoff": as_of - timedelta(days=retention.prospect_days),
        "customer_cutoff": as_of - timedelta(days=retention.customer_days),
    }


@dataclass(frozen=True)
class SourceRetentionSummary:
    """Subjects of ``customers`` past their retention date at ``as_of``.

    ``expired``: all of them; ``expired_prospects`` / ``expired_customers``: by kind;
    ``oldest_clock_at``: the oldest last action among them (None when there is none);
    ``checked``: customers rows read.
    """

    checked: int
    expired: int
    expired_prospects: int
    expired_customers: int
    oldest_clock_at: datetime | None


def source_retention_summary(
    con: WarehouseConnection, retention: SourceRetention, as_of: datetime
) -> SourceRetentionSummary:
    """Count the subjects past their retention date at ``as_of`` (naive UTC).

    Raises:
        duckdb.Error: ``customers`` or ``events`` is missing.
    """
    row = con.execute(
        f"""
        SELECT count(*), count(*) FILTER (expired),
               count(*) FILTER (expired AND NOT is_customer),
               count(*) FILTER (expired AND is_customer),
               min(clock_at) FILTER (expired)
        FROM ({RETENTION_CLOCK_SQL})
        """,
        retention_params(retention, as_of),
    ).fetchone()
    return SourceRetentionSummary(*row)


def create_departures_table(con: WarehouseConnection) -> None:
    """Create ``activation.departures`` if missing (idempotent): one row per (segment,
    destination, subject_key) acknowledged by the destination and absent from the audience,
    ``left_at`` = when the absence was first seen (naive UTC). The table's DDL lives with the
    other activation tables (:mod:`orchestrator.warehouse.schema`)."""
    create_activation_schema(con)


def track_departures(
    con: WarehouseConnection, *, segment: str, destination: str, now: datetime
) -> None:
    """Bring ``activation.departures`` of one (segment, destination) up to date, in one
    transaction: forget subjects no longer held (not in ``sync_state``) or back in the audience;
    record the others held but absent from the audience with ``left_at = now``, keeping an
    earlier ``left_at`` (the clock is never reset while the member stays away). The audience's
    segment is compared with the parameter, not correlated with the outer row (``a.segment =
    s.segment``): half the time of the anti-join at 1M customers (bench/README.md)."""
    create_departures_table(con)
    pair = {"segment": segment, "destination": destination}
    con.begin()
    try:
        con.execute(
            """
            DELETE FROM activation.departures AS d
            WHERE d.segment = $segment AND d.destination = $destination AND (
                NOT EXISTS (SELECT 1 FROM activation.sync_state AS s
                            WHERE s.segment = d.segment AND s.destination = d.destination
                              AND s.subject_key = d.subject_key)
                OR EXISTS (SELECT 1 FROM activation.audience_members AS a
                           WHERE a.segment = $segment AND a.subject_key = d.subject_key))
            """,
            pair,
        )
        con.execute(
            """
            INSERT INTO activation.departures (segment, destination, subject_key, left_at)
            SELECT s.segment, s.destination, s.subject_key, $now
            FROM activation.sync_state AS s
            WHERE s.segment = $segment AND s.destination = $destination
              AND NOT EXISTS (SELECT 1 FROM activation.audience_members AS a
                              WHERE a.segment = $segment AND a.subject_key = s.subject_key)
            ON CONFLICT (segment, destination, subject_key) DO NOTHING
            """,
            {**pair, "now": now},
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise


@dataclass(frozen=True)
class DestinationRetentionSummary:
    """What a destination holds beyond its purpose, for one (segment, destination).

    ``departed``: acknowledged members absent from the audience (still at the destination);
    ``overdue``: of those, gone for ``retention_days`` or more; ``oldest_left_at``: the
    earliest departure among the overdue (None when none); ``orphan_rows``: ``sync_state`` rows
    of this segment for destinations the segment no longer lists.
    """

    departed: int
    overdue: int
    oldest_left_at: datetime | None
    orphan_rows: int


def destination_retention_summary(
    con: WarehouseConnection,
    *,
    segment: str,
    destination: str,
    configured: list[str],
    retention_days: int,
    now: datetime,
) -> DestinationRetentionSummary:
    """Read ``activation.departures`` (call :func:`track_departures` first) and ``sync_state``.

    ``configured``: the destinations the segment file lists now; ``retention_days``: the
    segment's (days); ``now``: naive UTC.
    """
    create_departures_table(con)
    cutoff = now - timedelta(days=retention_days)
    departed, overdue, oldest = con.execute(
        """
        SELECT count(*), count(*) FILTER (left_at <= $cutoff),
               min(left_at) FILTER (left_at <= $cutoff)
        FROM activation.departures WHERE segment = $segment AND destination = $destination
        """,
        {"segment": segment, "destination": destination, "cutoff": cutoff},
    ).fetchone()
    (orphans,) = con.execute(
        """
        SELECT count(*) FROM activation.sync_state
        WHERE segment = $segment AND NOT list_contains($configured, destination)
        """,
        {"segment": segment, "configured": list(configured)},
    ).fetchone()
    return DestinationRetentionSummary(departed, overdue, oldest, orphans)


def unregistered_state_rows(
    con: WarehouseConnection, pairs: list[tuple[str, str]]
) -> tuple[int, datetime | None]:
    """``sync_state`` rows whose (segment, destination) is not among ``pairs`` (the pairs the
    segment files declare): (row count, oldest ``synced_at`` or None). Such rows outlive the
    purpose they were collected for (a deleted segment, or a destination it no longer lists)."""
    if not pairs:
        count, oldest = con.execute(
            "SELECT count(*), min(synced_at) FROM activation.sync_state"
        ).fetchone()
        return count, oldest
    segments = [segment for segment, _ in pairs]
    destinations = [destination for _, destination in pairs]
    count, oldest = con.execute(
        """
        SELECT count(*), min(s.synced_at) FROM activation.sync_state AS s
        WHERE NOT EXISTS (
            SELECT 1 FROM (SELECT unnest($segments) AS segment,
                                  unnest($destinations) AS destination) AS p
            WHERE p.segment = s.segment AND p.destination = s.destination)
        """,
        {"segments": segments, "destinations": destinations},
    ).fetchone()
    return count, oldest


__all__ = [
    "RETENTION_CLOCK_SQL",
    "DestinationRetentionSummary",
    "SourceRetentionSummary",
    "create_departures_table",
    "destination_retention_summary",
    "retention_clock_sql",
    "retention_params",
    "source_retention_summary",
    "track_departures",
    "unregistered_state_rows",
]
