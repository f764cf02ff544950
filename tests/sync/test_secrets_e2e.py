"""C4, end to end: a platform answers 403 and echoes the request's credential; no form of the
secret reaches stderr, the Dagster event log, ``activation.erasure_receipts`` or
``activation receipt`` output. Every platform, every encoding."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest

from destinations.mock.testing import running_mock
from destinations.redaction import leaked_forms
from orchestrator.privacy.requests import record_request
from tests.cli.conftest import run_activation
from tests.e2e_harness import event_log_text
from tests.sync.answers_project import AS_OF, LIST, META_AUD, run_job, sql, synthetic_emails

#: Credentials shaped like the real ones (a Graph API token, a Mailchimp key with its dc).
META_SECRET = "EAABsbCS1iHgBAKZCZBmock0SecretZBZAtokenZDZD"
MAILCHIMP_SECRET = "3f9c2b1e0d8a7c6b5a4f3e2d1c0b9a8f-us21"


def encodings(secret: str) -> list[str]:
    """The forms the test looks for: literal, HTTP Basic base64 (the user name our client
    sends, and none), base64 of the token alone, URL-encoded."""
    forms = [secret, quote(secret, safe=""), quote_plus(secret)]
    for raw in (f"anystring:{secret}", f":{secret}", secret):
        forms.append(base64.b64encode(raw.encode()).decode())
    return forms


def absent(text: str, secret: str) -> list[str]:
    return [form for form in encodings(secret) if form in text] + leaked_forms(text, [secret])


@pytest.mark.parametrize(
    ("platform", "path"), [("meta", f"{META_AUD}/users$"), ("mailchimp", f"lists/{LIST}")]
)
def test_an_echoed_credential_never_leaves_in_any_encoding(
    answers_env, tmp_path: Path, dagster_home: Path, capfd, platform: str, path: str
) -> None:
    emails = dict(enumerate(synthetic_emails(4), start=1))
    secret = META_SECRET if platform == "meta" else MAILCHIMP_SECRET
    with running_mock(
        tmp_path / "secret_mock", meta_token=META_SECRET, mailchimp_token=MAILCHIMP_SECRET
    ) as mock:
        project = answers_env(mock, emails)
        wh = project.warehouse
        with dg.DagsterInstance.get() as instance:
            run_job(instance)
            request_id = record_request(wh, emails[1], "erasure")
            sql(
                wh,
                "INSERT INTO customers VALUES (9, 'late.joiner@example.com', 'FR', 'France', ?, ?)",
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
            result = run_job(instance, AS_OF + timedelta(hours=1), raise_on_error=False)
            assert not result.success  # the sync to the refusing platform failed
            echoed = [e for e in mock.requests_log(platform) if e["fault"] == "status"]
            assert echoed and all(e["status"] == 403 for e in echoed)
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
        "event log": event_log_text(dagster_home),
        "erasure_receipts": receipts,
        "activation receipt": receipt.stdout + receipt.stderr,
        "activation receipt --format json": receipt_json.stdout + receipt_json.stderr,
    }.items():
        assert absent(text, secret) == [], where
    assert "Authorization" in receipts or "403" in receipts
