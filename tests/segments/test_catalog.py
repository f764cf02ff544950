"""The catalog only names real warehouse columns, and never the raw email."""

from __future__ import annotations

from orchestrator.segments.catalog import EVENT_FIELDS, EVENT_TYPES, TRAITS, ValueType
from orchestrator.warehouse.schema import SOURCE_COLUMNS


def test_traits_are_customer_columns_without_email() -> None:
    assert set(TRAITS) <= set(SOURCE_COLUMNS["customers"])
    assert "email" not in TRAITS
    assert list(TRAITS) == [
        "customer_id",
        "country",
        "country_name",
        "created_at",
        "last_contact_at",
    ]


def test_event_fields_are_event_columns_with_types() -> None:
    assert set(EVENT_FIELDS) <= set(SOURCE_COLUMNS["events"])
    assert EVENT_FIELDS["value"] is ValueType.NUMBER
    assert EVENT_FIELDS["quantity"] is ValueType.INTEGER
    assert EVENT_FIELDS["invoice_no"] is ValueType.TEXT
    assert EVENT_TYPES == ("purchase", "refund")
