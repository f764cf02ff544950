"""C4, end to end: a platform answers 403 and echoes the request's credential; no form of the
secret reaches stderr, the Dagster event log (logs, errors, materialization metadata),
``activation.erasure_receipts`` or ``activation receipt`` output. Every platform (Meta,
Mailchimp, Google's Data Manager API with its OAuth bearer token), every encoding."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest
import requests

from destinations.mock.testing import running_mock
from destinations.redaction import leaked_forms
from orchestrator.privacy.requests import record_request
from tests.cli.conftest import run_activation
from tests.e2e_harness import event_log_text
from tests.sync.answers_project import AS_OF, LIST, META_AUD, run_job, sql, synthetic_emails

#: Credentials shaped like the real ones (a Graph API token, a Mailchimp key with its dc).
META_SECRET = "EAABsbCS1iHgBAKZCZBmock0SecretZBZAtokenZDZD"
MAILCHIMP_SECRET = "3f9c2b1e0d8a7c6b5a4f3e2d1c0b9a8f-us21"
GOOGLE_SECRET = "ya29.a0AfB_byMockOAuthAccessTokenSecret0123456789-_xyz"
SECRETS = {"meta": META_SECRET, "mailchimp": MAILCHIMP_SECRET, "google": GOOGLE_SECRET}


def encodings(secret: str) -> list[str]:
    """The forms the test looks for: literal, HTTP Basic base64 (the user name our client
    sends, and none), base64 of the token alone, URL-encoded."""
    forms = [secret, quote(secret, safe=""), quote_plus(secret)]
    for raw in (f"anystring:{secret}", f":{secret}", secret):
        forms.append(base64.b64encode(raw.encode()).decode())
    return forms


def absent(text: str, secret: str) -> list[str]:
    return [form for form in encodings(secret) if form in text] + leaked_forms(text, [secret])


#: A request path each platform's echo fault matches (the probe below sends one).
PROBES = {
    "meta": f"/meta/v19.0/{META_AUD}/users",
    "mailchimp": f"/mailchimp/3.0/lists/{LIST}",
    "google": "/google/v1/audienceMembers:ingest",
}


def assert_the_fault_echoes(mock, platform: str) -> None:
    """The queued fault really puts the credential in the answer, in the platform's error shape
    (else the test proves nothing): one probe request with a marker token, its answer carries
    the marker where the platform puts its words."""
    marker = "probe-marker-token-0042"
    answer = requests.post(
        mock.base_url + PROBES[platform],
        json={},
        headers={"Authorization": f"Bearer {marker}"},
        timeout=10,
    )
    assert answer.status_code == 403 and marker in answer.text, answer.text
    body = answer.json()  # in the platform's own error shape, where its client reads words
    shaped = {
        "meta": lambda b: marker in b["error"]["message"],
        "mailchimp": lambda b: marker in b["detail"],
        "google": lambda b: (
            b["error"]["status"] == "PERMISSION_DENIED" and marker in b["error"]["message"]
        ),
    }
    assert shaped[platform](body), body


@pytest.mark.parametrize(
    ("platform", "path"),
    [
        ("meta", f"{META_AUD}/users$"),
        ("mailchimp", f"lists/{LIST}"),
        ("google", "audienceMembers:"),
    ],
)
def test_an_echoed_credential_never_leaves_in_any_encoding(
    answers_env, tmp_path: Path, dagster_home: Path, capfd, platform: str, path: str
) -> None:
    emails = dict(enumerate(synthetic_emails(4), start=1))
    secret = SECRETS[platform]
    with running_mock(
        tmp_path / "secret_mock",
        meta_token=META_SECRET,
        mailchimp_token=MAILCHIMP_SECRET,
        google_token=GOOGLE_SECRET,
    ) as mock:
        project = answers_env(mock, emails, google=platform == "google")
        wh = project.warehouse
        with dg.DagsterInstance.get() as instance:
            run_job(instance)
            request_id = record_request(wh, emails[1], "erasure")
            sql(
                wh,
                "INSERT INTO customers (customer_id, email, country, country_name, created_at,"
                " last_contact_at) VALUES (9, 'late.joiner@example.com', 'FR', 'France', ?, ?)",
                [AS_OF, AS_OF],
            )
            for purpose in ("email_marketing", "ad_targeting"):
                sql(
                    wh,
                    "INSERT INTO consents VALUES (?, 9, ?, 'granted', ?, 'signup_form', 'v3')",
                    [f"c-9-{purpose}", purpose, AS_OF],
                )
            echo = {"type": "status", "status": 403, "echo_request": True}
            mock.add_fault(platform, {"path": path}, echo, times=20)
            assert_the_fault_echoes(mock, platform)
            result = run_job(instance, AS_OF + timedelta(hours=1), raise_on_error=False)
            assert not result.success  # the sync to the refusing platform failed
            echoed = [e for e in mock.requests_log(platform) if e["fault"] == "status"]
            assert echoed and all(e["status"] == 403 for e in echoed)
            metadata = "\n".join(
                f"{k}={v.value}"
                for event in result.get_asset_materialization_events()
                for k, v in event.step_materialization_data.materialization.metadata.items()
            )
        receipt = run_activation("receipt", request_id, env={"ACTIVATION_WAREHOUSE": str(wh)})
        receipt_json = run_activation(
            "receipt", request_id, "--format", "json", env={"ACTIVATION_WAREHOUSE": str(wh)}
        )
    captured = capfd.readouterr()
    receipts = "\n".join(
        " | ".join(str(v) for v in row)
        for row in sql(wh, "SELECT * FROM activation.erasure_receipts")
    )
    assert "***" in receipts or "error" in receipts  # the refusal was recorded
    for where, text in {
        "stderr": captured.err,
        "stdout": captured.out,
        "materialization metadata": metadata,
        "event log": event_log_text(dagster_home),
        "erasure_receipts": receipts,
        "activation receipt": receipt.stdout + receipt.stderr,
        "activation receipt --format json": receipt_json.stdout + receipt_json.stderr,
    }.items():
        assert absent(text, secret) == [], where
    assert "Authorization" in receipts or "403" in receipts
