"""Values compared with the ``country`` trait must be officially assigned ISO 3166-1 alpha-2 codes.

The warehouse stores upper-case alpha-2 codes (``GB``, ``FR``): ``UK`` or ``gb`` would silently
select nobody, and a mirror destination would then lose every member. Each bad value is reported
as ``file:line field: message`` with the index of the list item.
"""

from __future__ import annotations

import pytest

from orchestrator.config import ProjectConfig
from orchestrator.segments.catalog import ISO_3166_ALPHA2, country_code_error
from orchestrator.segments.loader import (
    SegmentValidationError,
    load_segment_text,
    load_segments,
)
from tests.segments.conftest import REPO

PATH = "segments/countries.yaml"
HEAD = """\
name: countries
description: Lives in some countries
owner: crm-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: 30
schedule: "0 6 * * *"
"""
TAIL = """\
destinations:
  - destination: mailchimp
    audience_id: "a1b2c3d4e5"
    mode: mirror
"""
UK_MESSAGE = "'UK' is not an ISO 3166-1 code: the United Kingdom is 'GB'"


def _errors(project: ProjectConfig, audience: str) -> list[str]:
    with pytest.raises(SegmentValidationError) as caught:
        load_segment_text(HEAD + audience + TAIL, PATH, project)
    return [str(error) for error in caught.value.errors]


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        (
            "audience:\n  trait: country\n  eq: UK\n",
            f"{PATH}:10 audience.eq: {UK_MESSAGE}",
        ),
        (
            "audience:\n  trait: country\n  eq: gb\n",
            f"{PATH}:10 audience.eq: country codes are upper case: use 'GB'",
        ),
        (
            "audience:\n  trait: country\n  eq: EL\n",
            f"{PATH}:10 audience.eq: 'EL' is not an ISO 3166-1 code: Greece is 'GR'"
            " (EL is the EU's own abbreviation): use 'GR'",
        ),
        (
            "audience:\n  trait: country\n  eq: XX\n",
            f"{PATH}:10 audience.eq: unknown country code 'XX': expected an ISO 3166-1 alpha-2"
            " code, two upper-case letters such as 'FR' or 'GB'",
        ),
        (
            "audience:\n  not:\n    trait: country\n    eq: France\n",
            f"{PATH}:11 audience.not.eq: unknown country code 'France': expected an ISO 3166-1"
            " alpha-2 code, two upper-case letters such as 'FR' or 'GB'",
        ),
    ],
    ids=["UK", "lower-case", "EL", "unassigned", "name-under-not"],
)
def test_each_bad_code_has_its_message_line_and_field(
    project: ProjectConfig, audience: str, expected: str
) -> None:
    assert _errors(project, audience) == [expected]


def test_every_bad_item_of_a_list_is_reported_at_its_index(project: ProjectConfig) -> None:
    audience = """\
audience:
  all:
    - event: purchase
    - trait: country
      in:
        - fr
        - XX
        - GB
        - UK
"""
    assert _errors(project, audience) == [
        f"{PATH}:13 audience.all[1].in[0]: country codes are upper case: use 'FR'",
        f"{PATH}:14 audience.all[1].in[1]: unknown country code 'XX': expected an ISO 3166-1"
        " alpha-2 code, two upper-case letters such as 'FR' or 'GB'",
        f"{PATH}:16 audience.all[1].in[3]: {UK_MESSAGE}",
    ]


def test_flow_list_reports_the_brief_example(project: ProjectConfig) -> None:
    audience = "audience:\n  all:\n    - trait: country\n      in: [fr, XX, UK]\n"
    errors = _errors(project, audience)
    assert [error.split(": ", 1)[0] for error in errors] == [
        f"{PATH}:11 audience.all[0].in[0]",
        f"{PATH}:11 audience.all[0].in[1]",
        f"{PATH}:11 audience.all[0].in[2]",
    ]
    assert errors[2].endswith(UK_MESSAGE)


def test_valid_codes_and_other_text_traits_still_load(project: ProjectConfig) -> None:
    audience = """\
audience:
  any:
    - {trait: country, in: [GB, FR, "NO", AX, SS, XK]}
"""
    # XK (Kosovo) is user-assigned, not officially assigned: only that item fails.
    assert _errors(project, audience) == [
        f"{PATH}:10 audience.any[0].in[5]: unknown country code 'XK': expected an ISO 3166-1"
        " alpha-2 code, two upper-case letters such as 'FR' or 'GB'"
    ]
    fine = """\
audience:
  all:
    - {trait: country, in: [GB, FR, "NO", AX, SS, BQ, CW, SX]}
    - {not: {trait: country, eq: GR}}
    - {trait: country, is_null: false}
    - {trait: country_name, eq: UK}
"""
    spec = load_segment_text(HEAD + fine + TAIL, PATH, project)
    assert spec.id == "countries"


def test_a_type_error_is_reported_once_not_as_a_bad_code(project: ProjectConfig) -> None:
    errors = _errors(project, "audience:\n  trait: country\n  eq: NO\n")
    assert len(errors) == 1
    assert "expected text, got false" in errors[0]


def test_code_list_is_the_249_assigned_codes() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in ISO_3166_ALPHA2)
    # Recent assignments and codes the warehouse's dataset mapping uses.
    assert {"SS", "BQ", "CW", "SX", "BL", "MF", "GB", "GR", "IE", "ZA", "HK"} <= ISO_3166_ALPHA2
    # Reserved, withdrawn or user-assigned: not officially assigned.
    assert not {"UK", "EL", "EU", "AN", "CS", "YU", "XK", "XX", "ZZ"} & ISO_3166_ALPHA2


def test_warehouse_country_mapping_only_produces_assigned_codes() -> None:
    from orchestrator.warehouse.countries import DATASET_COUNTRY_CODES

    codes = {code for code in DATASET_COUNTRY_CODES.values() if code is not None}
    assert {code for code in codes if country_code_error(code)} == set()


def test_shipped_segments_still_load(project: ProjectConfig) -> None:
    result = load_segments(REPO / "segments", project)
    assert result.errors == []
    assert {path.stem for path in (REPO / "segments").glob("*.yaml")} == {
        loaded.path.stem for loaded in result.specs.values()
    }
