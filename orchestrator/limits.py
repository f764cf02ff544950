"""Bounds on the values a segment file or ``activation.yaml`` may hold.

Validation refuses anything outside them with ``file:line field: message``, so a file that
validates can never make a run fail on arithmetic: a number of days subtracted from the run's
time, a date turned into its next midnight, a count or an amount bound as a query parameter.

Why these numbers:
- Python ``datetime`` ends on 9999-12-31 (``date.max``) and a ``between`` last day becomes the
  next midnight, so ``9999-12-31`` overflowed at run time. Dates are kept within
  :data:`EARLIEST_DAY` .. :data:`LATEST_DAY`, far from both ends, and any window of
  :data:`MAX_DAYS` days before a run stays representable.
- :data:`MAX_DAYS` (100 years) is longer than any consent validity, retention or look-back a
  controller can justify (GDPR Art. 5(1)(e) storage limitation; the CNIL's reference periods are
  13 months to 3 years).
- :data:`MAX_COUNT` bounds counts such as ``at_least`` orders.
- :data:`MAX_ABS_NUMBER` (10^15) keeps amounts, prices and ids exact in a double and inside
  DuckDB's and PostgreSQL's BIGINT and DECIMAL(18, 2); ``.inf`` and ``.nan`` (YAML floats) are
  refused.
"""

from __future__ import annotations

import math
from datetime import date, datetime

MAX_DAYS: int = 36_500
EARLIEST_DAY: date = date(1900, 1, 1)
LATEST_DAY: date = date(2999, 12, 31)
MAX_COUNT: int = 1_000_000
MAX_ABS_NUMBER: int = 10**15


def number_problem(value: int | float) -> str | None:
    """Why a number is out of bounds (not finite, or larger than :data:`MAX_ABS_NUMBER` in
    absolute value), or None when it is fine."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if abs(value) > MAX_ABS_NUMBER:
        return f"must be between -{MAX_ABS_NUMBER:.0e} and {MAX_ABS_NUMBER:.0e}, got {value!r}"
    return None


def day_problem(value: date | datetime) -> str | None:
    """Why a date or date-time is out of bounds (before :data:`EARLIEST_DAY` or after
    :data:`LATEST_DAY`), or None when it is fine."""
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        return f"must be a date from {EARLIEST_DAY} to {LATEST_DAY}, got {value.isoformat()}"
    return None
