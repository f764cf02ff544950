"""What the destinations (mock servers) must hold after a segment's sync: its audience."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from destinations.mock.testing import MockHandle
from orchestrator.config import ProjectConfig
from orchestrator.segments.spec import SegmentSpec
from tests.e2e_harness import md5_hex
from tests.oracle import ExpectedAudience


def assert_destinations_hold_the_audiences(
    mock: MockHandle,
    config: ProjectConfig,
    specs: Mapping[str, SegmentSpec],
    expected: Mapping[str, ExpectedAudience],
    segments: Iterable[str],
) -> None:
    """Every destination of each segment holds exactly the oracle's audience: the Meta
    audience its member keys, the Mailchimp list its members' addresses as subscribed."""
    for sid in segments:
        for entry in specs[sid].destinations:
            if config.destinations[entry.destination].kind.value == "ad":
                assert mock.meta_members(entry.audience_id) == sorted(expected[sid].members)
                continue
            contacts = mock.mailchimp_members(entry.audience_id)
            subscribed = {c["hash"] for c in contacts if c["status"] == "subscribed"}
            assert subscribed == {md5_hex(email) for email in expected[sid].emails}, sid
