"""Five-field cron expressions, checked without importing Dagster.

The segment loader must stay import-light (it runs in the CLI and in every Dagster process), so
it cannot use ``dagster._utils.schedules.is_valid_cron_string``. This checker accepts a subset
of what Dagster accepts (a test compares both on a corpus): ``minute hour day-of-month month
day-of-week`` with ``*``, numbers, ``a-b`` ranges, ``/step``, comma lists, month names
``JAN``-``DEC`` and weekday names ``SUN``-``SAT`` (0 and 7 are both Sunday), or one of the macros
``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``.
"""

from __future__ import annotations

import re

MACROS: frozenset[str] = frozenset(
    {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (field name, lowest, highest, names mapped to lowest + index)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"^(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def cron_error(expression: str) -> str | None:
    """Return why ``expression`` is not a valid cron schedule, or None when it is valid.

    Besides syntax, rejects a day-of-month that no selected month has (``0 0 30 2 *``), which
    Dagster refuses too.
    """
    text = expression.strip()
    if text.startswith("@"):
        return None if text.lower() in MACROS else f"unknown cron macro {text!r}"
    parts = text.split()
    if len(parts) != 5:
        return f"cron needs 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
    values: list[set[int]] = []
    for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        selected, problem = _expand_field(part, low, high, names)
        if problem:
            return f"cron {name} field {part!r}: {problem}"
        values.append(selected)
    if parts[2] != "*" and parts[4] == "*" and not _day_exists(values[2], values[3]):
        return "cron day of month never occurs in the selected months"
    return None


def _expand_field(
    part: str, low: int, high: int, names: tuple[str, ...]
) -> tuple[set[int], str | None]:
    selected: set[int] = set()
    for item in part.split(","):
        match = _ITEM.match(item)
        if not match:
            return selected, f"cannot read {item!r}"
        step = int(match["step"]) if match["step"] else 1
        if step < 1:
            return selected, "step must be >= 1"
        if match["base"] == "*":
            start, stop = low, high
        else:
            bounds = [_number(bound, names, low) for bound in match["base"].split("-")]
            if any(bound is None or not low <= bound <= high for bound in bounds):
                return selected, f"values must be {low}-{high}" + (
                    f" or {names[0]}-{names[-1]}" if names else ""
                )
            start, stop = bounds[0], bounds[-1]
            if match["step"] and len(bounds) == 1:
                stop = high
            if start > stop:
                return selected, f"range {item!r} goes backwards"
        selected.update(range(start, stop + 1, step))
    return selected, None


def _number(token: str, names: tuple[str, ...], low: int) -> int | None:
    if token.isdigit():
        return int(token)
    upper = token.upper()
    return low + names.index(upper) if upper in names else None


def _day_exists(days: set[int], months: set[int]) -> bool:
    return any(day <= _DAYS_IN_MONTH[month - 1] for day in days for month in months)
