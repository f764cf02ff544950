"""The ``privacy_changes_sensor``: a consent withdrawal recorded while a segment's sync runs (or
at any time after its audience was built) is applied within minutes by launching the segment's
job again, never left for its schedule, which may be a week away.

Why a sensor: a withdrawal is a row in the consent log, read by the audience step. A sync that
is running when the row arrives (its pair lock held, slowed by a platform's ``429`` and
``Retry-After``) sends the audience it was given; a second run started meanwhile fails on the
pair lock. Erasures and objections have their own sensor (``privacy_requests_sensor``) and
job, which waits for the pair lock; withdrawals had none.

What it looks at is state, not arrival time: for each segment, the subjects a destination
holds for it (``activation.sync_state``, pending rows included) whose latest consent record for
the segment's purpose in the source model's consent view (``activation.src_consents``: the
company's log and the withdrawals ``activation withdraw`` records; a withdrawal under a
purpose-name variant counts, as in the audience) is ``withdrawn`` (over every customer record
with that address: the pseudonym cache and the key history; at equal ``recorded_at`` the
withdrawal wins, the most protective reading). A back-dated withdrawal counts as much as a
fresh one; once the sync has removed the person the segment no longer shows up.

Per tick (every :data:`SENSOR_INTERVAL_S` seconds, default RUNNING): one read-only query (the
tick is skipped when a writer holds the warehouse for :data:`SENSOR_LOCK_TIMEOUT_S`); a
segment is launched unless a run of its job (or of ``all_segments_job``) is queued or running,
or it was launched less than :data:`FOLLOW_UP_AFTER_S` ago and still shows up (a destination
refusing the removal is then retried every few minutes, not every tick). The cursor is JSON
``{"launched": {segment: launched_at ISO (naive UTC)}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import dagster as dg

from destinations.resources import unset_in
from orchestrator.consent import purpose_key, purpose_key_sql
from orchestrator.privacy.receipts import utc_now
from orchestrator.privacy.sensor import unreadable
from orchestrator.warehouse.connect import connect
from orchestrator.warehouse.connection import WarehouseConnection
from orchestrator.warehouse.errors import DATABASE_ERRORS
from orchestrator.warehouse.resources import WarehouseResource
from orchestrator.warehouse.target import WarehouseTarget

CHANGES_SENSOR = "privacy_changes_sensor"
SENSOR_INTERVAL_S = 30
SENSOR_LOCK_TIMEOUT_S = 2.0
#: A segment launched this long ago that still holds a withdrawn person is launched again (s).
FOLLOW_UP_AFTER_S = 300
#: Run statuses of a run that has not finished.
ACTIVE_STATUSES = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)

_HELD_WITHDRAWN_SQL = """
WITH seg AS (
    SELECT unnest($segments) AS segment, unnest($purposes) AS purpose,
           unnest($purpose_keys) AS purpose_key
),
held AS (
    SELECT DISTINCT segment, subject_key FROM activation.sync_state
    WHERE list_contains($segments, segment)
),
people AS (
    SELECT h.segment, h.subject_key, k.customer_id
    FROM held AS h JOIN activation.customer_keys AS k USING (subject_key)
    UNION
    SELECT h.segment, h.subject_key, y.customer_id
    FROM held AS h JOIN activation.customer_key_history AS y USING (subject_key)
),
latest AS (
    SELECT p.segment, p.subject_key,
           arg_max(c.status, (c.recorded_at, c.status = 'withdrawn')) AS status
    FROM people AS p
    JOIN seg USING (segment)
    JOIN activation.src_consents AS c ON c.customer_id = p.customer_id
     AND {purpose_key} = seg.purpose_key AND (c.purpose = seg.purpose OR c.status <> 'granted')
    GROUP BY p.segment, p.subject_key
)
SELECT segment, count(*) FROM latest WHERE status = 'withdrawn' GROUP BY segment ORDER BY segment
""".replace("{purpose_key}", purpose_key_sql("c.purpose"))


def held_withdrawn(con: WarehouseConnection, segment_purposes: Mapping[str, str]) -> dict[str, int]:
    """Segment id -> number of subjects a destination holds for it whose latest consent for the
    segment's purpose is ``withdrawn`` (module docstring). ``segment_purposes``: segment id
    -> purpose. Segments with none are absent.

    Raises:
        duckdb.Error, psycopg.Error: a table cannot be read (the sensor skips the tick).
    """
    if not segment_purposes:
        return {}
    segments = sorted(segment_purposes)
    rows = con.execute(
        _HELD_WITHDRAWN_SQL,
        {
            "segments": segments,
            "purposes": [segment_purposes[s] for s in segments],
            "purpose_keys": [purpose_key(segment_purposes[s]) for s in segments],
        },
    ).fetchall()
    return {segment: count for segment, count in rows}


def parse_launches(cursor: str | None) -> dict[str, datetime]:
    """Segment -> last launch (naive UTC) from the cursor; ``{}`` for anything unreadable."""
    try:
        data = json.loads(cursor or "{}")
        return {s: datetime.fromisoformat(at) for s, at in data.get("launched", {}).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def format_launches(launched: Mapping[str, datetime]) -> str:
    """The cursor JSON for ``launched`` (segment -> naive UTC)."""
    body = {s: at.isoformat() for s, at in sorted(launched.items())}
    return json.dumps({"launched": body}, separators=(",", ":"))


def plan_follow_ups(
    waiting: Mapping[str, int],
    launched: Mapping[str, datetime],
    active: set[str],
    now: datetime,
    follow_up_after: timedelta,
) -> tuple[list[str], dict[str, datetime]]:
    """Segments to launch now and the launches to remember.

    ``waiting``: segment -> held withdrawn subjects; ``launched``: segment -> last launch;
    ``active``: segments with a run queued or running. A segment is launched when it is
    waiting, not active, and not launched within ``follow_up_after`` (a launch time after
    ``now``, a clock set back, does not hold it back). Segments no longer waiting are
    forgotten.
    """
    launch = [
        segment
        for segment in sorted(waiting)
        if segment not in active
        and not timedelta(0) <= now - launched.get(segment, datetime.min) < follow_up_after
    ]
    remembered = {s: at for s, at in launched.items() if s in waiting}
    remembered.update(dict.fromkeys(launch, now))
    return launch, remembered


def _active_segments(
    instance: dg.DagsterInstance, jobs: Mapping[str, str], all_job: str | None
) -> set[str]:
    """Segments with a run of their job (or of ``all_job``: every segment) not finished."""
    filters = dg.RunsFilter(statuses=list(ACTIVE_STATUSES))
    running = {run.job_name for run in instance.get_runs(filters=filters, limit=200)}
    if all_job is not None and all_job in running:
        return set(jobs)
    return {segment for segment, job in jobs.items() if job in running}


def build_changes_sensor(
    segment_purposes: Mapping[str, str],
    jobs: Sequence[dg.UnresolvedAssetJobDefinition],
    *,
    job_for: Mapping[str, str],
    all_job: str | None = None,
    variables: Mapping[str, Sequence[str]] | None = None,
) -> dg.SensorDefinition:
    """The sensor (module docstring). ``segment_purposes``: segment id -> purpose;
    ``jobs``: the segment jobs it may launch; ``job_for``: segment id -> job name;
    ``all_job``: the job refreshing every segment (a run of it counts as active for all);
    ``variables``: segment id -> the environment variables its job needs at run start (its
    destinations' base URLs and tokens). A segment whose variables are unset is not launched
    (a warning names them; it is looked at again next tick): Dagster would refuse that run, and
    one refused request would stop the tick's other launches. Needs the ``warehouse``
    resource."""

    @dg.sensor(
        name=CHANGES_SENSOR,
        jobs=list(jobs),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        description=(
            "Launches a segment's job again when a destination still holds someone whose "
            "consent for the segment's purpose is withdrawn (recorded during or after a sync)."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        try:
            with connect(
                WarehouseTarget.from_resource(warehouse),
                read_only=True,
                timeout_s=SENSOR_LOCK_TIMEOUT_S,
            ) as con:
                waiting = held_withdrawn(con, segment_purposes)
        except DATABASE_ERRORS as error:
            return dg.SkipReason(f"warehouse not readable now ({unreadable(error)}); next tick")
        launched = parse_launches(context.cursor)
        active = _active_segments(context.instance, job_for, all_job) if waiting else set()
        now = utc_now()
        launch, remembered = plan_follow_ups(
            waiting, launched, active, now, timedelta(seconds=FOLLOW_UP_AFTER_S)
        )
        blocked = {s: unset_in((variables or {}).get(s, ())) for s in launch}
        for segment, missing in blocked.items():
            if missing:
                context.log.warning(
                    f"{segment}: not launched, environment variable(s) {', '.join(missing)} "
                    "not set (its destinations' base URL and token)"
                )
                launch.remove(segment)
                remembered.pop(segment, None)
        if remembered != launched:
            context.update_cursor(format_launches(remembered))
        unset = sorted({v for missing in blocked.values() for v in missing})
        if not launch and unset:
            return dg.SkipReason(f"withdrawals waiting; not launched: {', '.join(unset)} not set")
        if not launch:
            return dg.SkipReason(
                f"no withdrawal waiting ({len(waiting)} segment(s) waiting on a running or"
                " recent run)"
                if waiting
                else "no destination holds anyone whose consent is withdrawn"
            )
        return [
            dg.RunRequest(
                run_key=f"privacy-changes-{segment}-{now.isoformat()}",
                job_name=job_for[segment],
                tags={"privacy_changes": "withdrawal", "segment": segment},
            )
            for segment in launch
        ]

    return _sensor


__all__ = [
    "CHANGES_SENSOR",
    "FOLLOW_UP_AFTER_S",
    "build_changes_sensor",
    "format_launches",
    "held_withdrawn",
    "parse_launches",
    "plan_follow_ups",
]
