"""The loader's cron check never accepts a schedule Dagster would refuse."""

from __future__ import annotations

import pytest
from dagster._utils.schedules import is_valid_cron_string

from orchestrator.segments.cron import cron_error

VALID = [
    "0 6 * * *",
    "*/15 * * * *",
    "30 5 * * MON",
    "0 6 * * mon-fri",
    "0 0 1,15 * *",
    "0 0 * jan-mar sun",
    "5/15 * * * *",
    "0 0 29 2 *",
    "0 0 * * 7",
    "@daily",
    "@hourly",
    "@weekly",
    "@monthly",
    "@midnight",
]
INVALID = [
    ("", "cron needs 5 fields"),
    ("0 6 * *", "cron needs 5 fields"),
    ("0 6 * * * *", "cron needs 5 fields"),
    ("61 6 * * *", "cron minute field '61': values must be 0-59"),
    ("0 24 * * *", "cron hour field '24': values must be 0-23"),
    ("0 0 0 * *", "cron day of month field '0': values must be 1-31"),
    ("0 0 * 13 *", "cron month field '13': values must be 1-12 or JAN-DEC"),
    ("0 0 * * 8", "cron day of week field '8': values must be 0-7 or SUN-SAT"),
    ("0 0 * * FUN", "cron day of week field 'FUN'"),
    ("0 */0 * * *", "cron hour field '*/0': step must be >= 1"),
    ("0 0 30 2 *", "cron day of month never occurs in the selected months"),
    ("every day", "cron needs 5 fields"),
    ("@sometimes", "unknown cron macro '@sometimes'"),
    ("0 6 * * * ;rm", "cron needs 5 fields"),
]


@pytest.mark.parametrize("expression", VALID)
def test_valid_schedules_are_accepted_by_both(expression: str) -> None:
    assert cron_error(expression) is None
    assert is_valid_cron_string(expression)


@pytest.mark.parametrize(("expression", "message"), INVALID)
def test_invalid_schedules_are_explained(expression: str, message: str) -> None:
    problem = cron_error(expression)
    assert problem is not None and problem.startswith(message)
    assert not is_valid_cron_string(expression)
