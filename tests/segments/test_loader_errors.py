"""A corpus of broken segment files: each must be reported as ``file:line field: message``.

The expected line is the one carrying the ``# <-`` marker in the case's YAML, so the corpus reads
like the file a marketer would see in an editor.
"""

from __future__ import annotations

import pytest

from orchestrator.config import ProjectConfig
from orchestrator.segments.loader import SegmentValidationError, load_segment_text

PATH = "segments/broken.yaml"
HEAD = """\
name: broken
description: A segment with one mistake
owner: crm-team@example.com
"""
EMAIL_HEAD = (
    HEAD
    + """\
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
"""
)
MAILCHIMP = """\
destinations:
  - destination: mailchimp
    audience_id: "a1b2c3d4e5"
    mode: mirror
"""
SIMPLE_AUDIENCE = """\
audience:
  trait: country
  eq: FR
"""


def case(text: str, field: str, fragment: str, line: int | None = None):
    return pytest.param(text, field, fragment, line, id=f"{field or 'file'}:{fragment[:40]}")


CASES = [
    case(
        EMAIL_HEAD
        + """\
audience:
  all:
    - trait: contry  # <-
      in: [FR, DE]
"""
        + MAILCHIMP,
        "audience.all[0].trait",
        "unknown trait 'contry'; valid traits: customer_id, country, country_name, signed_up_at,"
        " last_interaction_at, loyalty_tier, lifetime_value, preferred_store",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  all:
    - trait: country
      in: [FR]
    - event: purchase
      within_days: 0  # <-
"""
        + MAILCHIMP,
        "audience.all[1].within_days",
        "must be > 0",
    ),
    case(
        EMAIL_HEAD
        + SIMPLE_AUDIENCE
        + """\
sql: SELECT customer_id FROM activation.src_customers  # <-
"""
        + MAILCHIMP,
        "sql",
        "give either audience or sql, not both",
    ),
    case(
        """\
name: broken  # <-
description: No audience at all
owner: crm-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
"""
        + MAILCHIMP,
        "",
        "an audience: (conditions) or a sql: (SELECT) section is required",
    ),
    case(
        HEAD
        + """\
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 25 * * *"  # <-
"""
        + SIMPLE_AUDIENCE
        + MAILCHIMP,
        "schedule",
        "cron hour field '25': values must be 0-23",
    ),
    case(
        EMAIL_HEAD
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: mailchimps  # <-
    audience_id: "a1b2c3d4e5"
    mode: mirror
""",
        "destinations[0].destination",
        "unknown destination 'mailchimps'; declared destinations: meta_ads, mailchimp",
    ),
    case(
        HEAD
        + """\
purpose: ad_targeting
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
"""
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: mailchimp  # <-
    audience_id: "a1b2c3d4e5"
    mode: mirror
""",
        "destinations[0].destination",
        "destination 'mailchimp' does not serve purpose 'ad_targeting' (it serves:"
        " email_marketing)",
    ),
    case(
        HEAD
        + """\
purpose: ad_targeting
legal_basis: legitimate_interest  # <-
retention_days: 30
schedule: "0 6 * * *"
"""
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: meta_ads
    audience_id: "120210000000001"
    mode: mirror
""",
        "legal_basis",
        "purpose 'ad_targeting' does not accept legal basis 'legitimate_interest' (accepted:"
        " consent)",
    ),
    case(
        HEAD
        + """\
purpose: ad_targeting
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
"""
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: meta_ads
    audience_id: "120210000000001"
    mode: mirror
    fields: {COUNTRY: country}  # <-
""",
        "destinations[0].fields",
        "fields are not allowed for ad destination 'meta_ads': ad platforms receive hashed"
        " identifiers only",
    ),
    case(
        EMAIL_HEAD
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: mailchimp
    audience_id: "a1b2c3d4e5"
    mode: mirror
    fields:
      ADDRESS: email  # <-
""",
        "destinations[0].fields.ADDRESS",
        "'email' is not allowed: a raw identifier is never a segment condition or a field",
    ),
    case(
        EMAIL_HEAD
        + """\
sql: SELECT customer_id FROM activation.src_customers; SELECT 1 AS customer_id  # <-
"""
        + MAILCHIMP,
        "sql",
        "must be exactly one statement, found 2",
    ),
    case(
        EMAIL_HEAD
        + """\
sql: |  # <-
  SELECT customer_id FROM activation.src_customers WHERE lower(email) LIKE '%gmail%'
"""
        + MAILCHIMP,
        "sql",
        "'email' is not allowed: a raw identifier is never a segment condition",
    ),
    case(
        EMAIL_HEAD
        + """\
sql: DROP TABLE customers  # <-
"""
        + MAILCHIMP,
        "sql",
        "must be a SELECT, found DROP",
    ),
    case(
        EMAIL_HEAD
        + """\
sql: |  # <-
  SELECT customer_id FROM read_csv('/etc/passwd')
"""
        + MAILCHIMP,
        "sql",
        "file system operations are disabled",
    ),
    case(
        EMAIL_HEAD
        + """\
sql: SELECT customer_id, country FROM activation.src_customers  # <-
"""
        + MAILCHIMP,
        "sql",
        "must return exactly one column named customer_id, got: customer_id, country",
    ),
    case(
        EMAIL_HEAD
        + """\
sql: "ATTACH 'other.duckdb'"  # <-
"""
        + MAILCHIMP,
        "sql",
        "must be a SELECT, found ATTACH",
    ),
    case(
        HEAD.replace(
            "description: A segment with one mistake",
            "description: Spring sale: buyers of March  # <-",
        )
        + "purpose: email_marketing\n",
        "",
        "invalid YAML: mapping values are not allowed",
    ),
    case(
        HEAD + "purpose: email_marketing\n\tlegal_basis: consent  # <-\n",
        "",
        "invalid YAML",
    ),
    case("", "", "file is empty", line=1),
    case("# just a comment\n", "", "file is empty", line=1),
    case(
        "- name: broken  # <-\n- name: other\n",
        "",
        "expected a mapping of segment fields",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  any:
    - trait: country
      eq: GB
    - not:
        all:
          - event: refund
          - event: purchase
            at_least: two  # <-
"""
        + MAILCHIMP,
        "audience.any[1].not.all[1].at_least",
        "must be a whole number",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  not:
    any:
      - trait: country
        in:
          - FR
          - NO  # <-
"""
        + MAILCHIMP,
        "audience.not.any[0].in[1]",
        'YAML reads yes/no/on/off/NO as booleans, quote the value (e.g. "NO")',
    ),
    case(
        EMAIL_HEAD
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: mailchimp  # <-
    audience_id: "a1b2c3d4e5"
""",
        "destinations[0].mode",
        "field required",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  event: purchase
  within_day: 30  # <-
"""
        + MAILCHIMP,
        "audience.within_day",
        "extra field not allowed",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  all:
    - trait: country
      gte: FR  # <-
"""
        + MAILCHIMP,
        "audience.all[0].gte",
        "operator 'gte' does not apply to trait 'country' (text); use one of eq, in, is_null",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  all:
    - trait: country  # <-
      eq: FR
      in: [DE]
"""
        + MAILCHIMP,
        "audience.all[0]",
        "give exactly one operator of eq, in, is_null (found: eq, in)",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  trait: last_interaction_at
  eq:  # <-
"""
        + MAILCHIMP,
        "audience.eq",
        "a value is required (is_null: true matches missing values)",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  trait: signed_up_at
  gte: 2024-02-30  # <-
"""
        + MAILCHIMP,
        "audience.gte",
        "expected an ISO date like 2024-03-01",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  all:
    - foo: bar  # <-
"""
        + MAILCHIMP,
        "audience.all[0]",
        "a condition is a mapping with exactly one of trait, event, all, any, not",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  event: purchases  # <-
"""
        + MAILCHIMP,
        "audience.event",
        "unknown event type 'purchases'; valid event types: add_to_cart, checkout_started, "
        "page_view, purchase, refund",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  event: purchase
  where:
    - field: colour  # <-
      eq: red
"""
        + MAILCHIMP,
        "audience.where[0].field",
        "unknown event field 'colour'; valid event fields: order_no, stock_code, description,"
        " quantity, unit_price_gbp, sku, page_path",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  event: purchase
  between: [2024-03-31, 2024-03-01]  # <-
"""
        + MAILCHIMP,
        "audience.between",
        "first day is after last day",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  event: purchase
  within_days: 30
  between: [2024-03-01, 2024-03-31]  # <-
"""
        + MAILCHIMP,
        "audience.between",
        "give within_days or between, not both",
    ),
    case(
        EMAIL_HEAD
        + """\
audience:
  event: purchase
  total_value:
    gte: lots  # <-
"""
        + MAILCHIMP,
        "audience.total_value.gte",
        "expected a number, got 'lots'",
    ),
    case(
        EMAIL_HEAD.replace('schedule: "0 6 * * *"', "timezone: Europe/Pariss  # <-")
        + 'schedule: "0 6 * * *"\n'
        + SIMPLE_AUDIENCE
        + MAILCHIMP,
        "timezone",
        "unknown time zone 'Europe/Pariss'",
    ),
    case(
        EMAIL_HEAD.replace("retention_days: 30", "retention_days: 0  # <-")
        + SIMPLE_AUDIENCE
        + MAILCHIMP,
        "retention_days",
        "must be > 0",
    ),
    case(
        EMAIL_HEAD.replace("name: broken", "name: 2024 spring sale  # <-")
        + SIMPLE_AUDIENCE
        + MAILCHIMP,
        "name",
        "name '2024 spring sale' gives id '2024_spring_sale', which must start with a letter",
    ),
    case(
        EMAIL_HEAD
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: mailchimp
    audience_id: "a1b2c3d4e5"
    mode: mirror
  - destination: mailchimp  # <-
    audience_id: "0000000000"
    mode: upsert
""",
        "destinations[1].destination",
        "destination 'mailchimp' is already listed at destinations[0]",
    ),
    case(
        EMAIL_HEAD
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: mailchimp
    audience_id: "a1b2c3d4e5"
    mode: mirror
    mode: upsert  # <-
""",
        "destinations[0].mode",
        "duplicate key 'mode' (first at line",
    ),
    case(
        EMAIL_HEAD
        + SIMPLE_AUDIENCE
        + """\
destinations:
  - destination: mailchimp
    audience_id: ../../lists/other  # <-
    mode: mirror
""",
        "destinations[0].audience_id",
        "must match ^[A-Za-z0-9_.-]{1,100}$",
    ),
]


@pytest.mark.parametrize(("text", "field", "fragment", "line"), CASES)
def test_broken_segment_is_reported_with_file_line_and_field(
    project: ProjectConfig, text: str, field: str, fragment: str, line: int | None
) -> None:
    expected_line = line or _marker_line(text)
    with pytest.raises(SegmentValidationError) as caught:
        load_segment_text(text, PATH, project)
    errors = caught.value.errors
    assert len(errors) == 1, [str(error) for error in errors]
    error = errors[0]
    assert (str(error.path), error.line, error.field) == (PATH, expected_line, field)
    assert fragment in error.message
    prefix = f"{PATH}:{expected_line} {field}: " if field else f"{PATH}:{expected_line}: "
    assert str(error).startswith(prefix)


def _marker_line(text: str) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if "# <-" in line]
    assert len(lines) == 1, "each case marks exactly one line"
    return lines[0]


def test_every_problem_of_a_file_is_reported_at_once(project: ProjectConfig) -> None:
    text = (
        EMAIL_HEAD.replace("retention_days: 30", "retention_days: -1")
        + """\
audience:
  all:
    - trait: contry
      eq: FR
    - event: purchase
      within_days: 0
"""
        + MAILCHIMP
    )
    with pytest.raises(SegmentValidationError) as caught:
        load_segment_text(text, PATH, project)
    assert [(e.line, e.field) for e in caught.value.errors] == [
        (6, "retention_days"),
        (10, "audience.all[0].trait"),
        (13, "audience.all[1].within_days"),
    ]
    assert str(caught.value).splitlines()[0] == f"{PATH}:6 retention_days: must be > 0"
