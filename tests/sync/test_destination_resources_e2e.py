"""Each segment job needs only its own destinations' variables: with Meta's token unset, the
Meta segment's job fails naming ``META_ACCESS_TOKEN`` (never a value) while the Mailchimp
segment's job runs and syncs. Real Dagster instance, real mock destinations, the real
Definitions of a two-segment project (:mod:`tests.sync.answers_project`)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from destinations.redaction import leaked_forms
from orchestrator.launch import segment_run_config
from tests.cli.conftest import run_activation
from tests.e2e_harness import event_log_text
from tests.sync.answers_project import ADS, AS_OF, LIST, MAIL, META_AUD, load_defs

EMAILS = {1: "ada.one@example.com", 2: "bea.two@example.org", 3: "cyd.three@example.com"}


def _job(name: str, instance: dg.DagsterInstance, **kwargs):
    job = load_defs().resolve_job_def(f"{name}_job")
    config = segment_run_config(job, as_of=AS_OF.isoformat())
    return job.execute_in_process(run_config=config, instance=instance, **kwargs)


def test_an_unset_token_fails_only_the_job_of_its_destination(
    answers_env, mock_destinations, monkeypatch: pytest.MonkeyPatch, dagster_home: Path
) -> None:
    mock = mock_destinations
    answers_env(mock, EMAILS)
    monkeypatch.delenv("META_ACCESS_TOKEN")
    with dg.DagsterInstance.get() as instance:
        mail = _job(MAIL, instance)
        assert mail.success
        with pytest.raises(dg.DagsterInvalidConfigError) as info:
            _job(ADS, instance)
    assert len(mock.mailchimp_members(LIST)) == len(EMAILS)
    assert mock.meta_members(META_AUD) == []
    message = str(info.value)
    assert "META_ACCESS_TOKEN" in message and "not set" in message
    assert "MAILCHIMP_API_KEY" not in message  # the other destination's variable is not needed
    secrets = [mock.mailchimp_token, mock.meta_token]
    assert leaked_forms(message + event_log_text(dagster_home), secrets) == []


def test_an_empty_token_fails_the_run_naming_the_variable(
    answers_env, mock_destinations, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = mock_destinations
    answers_env(mock, EMAILS)
    monkeypatch.setenv("META_ACCESS_TOKEN", "  ")
    with dg.DagsterInstance.get() as instance:
        result = _job(ADS, instance, raise_on_error=False)
    assert not result.success
    errors = " ".join(
        str(e.event_specific_data.error)
        for e in result.all_events
        if e.is_failure and e.event_specific_data
    )
    assert "META_ACCESS_TOKEN" in errors
    assert mock.meta_members(META_AUD) == []


def test_the_cli_names_the_variable_and_runs_the_other_segment(
    answers_env, mock_destinations, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = mock_destinations
    answers_env(mock, EMAILS)
    monkeypatch.delenv("META_ACCESS_TOKEN")
    done = run_activation("run", ADS, MAIL, "--as-of", AS_OF.isoformat(), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{ADS}: not started" in done.stdout and "META_ACCESS_TOKEN" in done.stdout
    assert "succeeded" in done.stdout  # the Mailchimp segment's run
    assert len(mock.mailchimp_members(LIST)) == len(EMAILS)
    assert mock.meta_members(META_AUD) == []
    assert leaked_forms(done.stdout + done.stderr, [mock.mailchimp_token]) == []
