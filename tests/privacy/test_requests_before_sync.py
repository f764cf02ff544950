"""A segment run honours open erasure requests before it syncs: ``activation forget`` then any
segment job (no sensor involved) leaves a complete receipt naming every destination told and
when, and the syncs of that run have nothing left to send for the person."""

from __future__ import annotations

import dagster as dg

from orchestrator.assets import segment_key, sync_key
from orchestrator.privacy.receipts import receipt_for
from orchestrator.privacy.requests import record_request
from orchestrator.pseudonymize import google_key, subject_key
from tests.privacy.helpers import (
    ADS,
    AS_OF,
    ERIN,
    LIST,
    MAIL,
    META_AUD,
    META_EU_AUD,
    SEGMENT_DESTINATIONS,
    load_defs,
    md5,
    run_segments,
)

ADS_JOB = f"{ADS}_job"


def ads_job() -> dg.JobDefinition:
    """The ads segment's own job for the current environment (reconstructable)."""
    return load_defs().resolve_job_def(ADS_JOB)


def ads_run_config() -> dict:
    """``as_of`` for the ads segment's assets, in process (child processes take a minute)."""
    keys = [segment_key(ADS)]  # its op builds the audience too
    keys += [sync_key(ADS, d) for d in SEGMENT_DESTINATIONS[ADS]]
    config = {"config": {"as_of": AS_OF.isoformat()}}
    return {
        "execution": {"config": {"in_process": {}}},
        "ops": {key.to_python_identifier(): config for key in keys},
    }


def test_forget_then_a_segment_run_writes_the_receipt_before_syncing(
    privacy_project, mock_destinations
) -> None:
    wh = privacy_project.warehouse_path
    mock = mock_destinations
    defs = load_defs()
    key, gkey = subject_key(ERIN), google_key(ERIN)
    with dg.DagsterInstance.get() as instance:
        run_segments(defs, instance)
        assert key in mock.meta_members(META_AUD) and gkey in mock.meta_members(META_EU_AUD)
        request_id = record_request(wh, ERIN, "erasure")
        assert receipt_for(wh, request_id)["status"] == "open"

        result = dg.execute_job(
            dg.reconstructable(ads_job), instance=instance, run_config=ads_run_config()
        )
        failures = [e.event_specific_data for e in result.all_events if e.is_step_failure]
        assert result.success, failures
        event = instance.get_latest_materialization_event(sync_key(ADS, "meta_ads"))
        meta = event.asset_materialization.metadata

    receipt = receipt_for(wh, request_id)
    assert receipt["complete"] and receipt["status"] == "complete"
    lines = {(d["segment"], d["destination"]): d for d in receipt["destinations"]}
    assert {pair: (d["action"], d["outcome"]) for pair, d in lines.items()} == {
        (ADS, "meta_ads"): ("remove", "ok"),
        (ADS, "meta_ads_eu"): ("remove", "ok"),
        (MAIL, "mailchimp"): ("delete_permanent", "ok"),
    }
    assert all(receipt["received_at"] <= d["sent_at"] for d in lines.values())

    # The destinations no longer hold the person, and the run's syncs sent nothing for them.
    assert key not in mock.meta_members(META_AUD)
    assert gkey not in mock.meta_members(META_EU_AUD)
    members = {m["hash"]: m for m in mock.mailchimp_members(LIST)}
    assert members[md5(ERIN)]["status"] == "forgotten"
    assert (meta["adds"].value, meta["removes"].value) == (0, 0)
