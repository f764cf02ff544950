"""A property of the acknowledgement rule, with seeded random platform answers.

Rounds of random audience changes, each synced while the mock answers at random: plain
success, per-row errors, rows silently ignored, a 200 whose body is not the documented JSON
(applied, or cut in half), a 5xx. After every round, our state never claims more than the
platform holds: every row ``sync_state`` holds as synced is at the destination, and the
destination holds nothing ``sync_state`` does not know (synced or pending). With the answers
back to normal, a rerun converges: destination == audience, but for adds the platform refused
for good (named in the rejection report; a row refused for good after an unconfirmed send may
be held or not, and stays pending).
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient, subscriber_hash
from destinations.meta import MetaAudienceClient
from destinations.mock.testing import running_mock
from orchestrator.pseudonymize import normalize_email, subject_key
from orchestrator.sync.diff import PENDING_HASH
from orchestrator.sync.engine import run_sync
from orchestrator.warehouse.connect import connect
from tests.sync.helpers import T0, fake_emails, new_warehouse, set_audience

SEG, AUDIENCE, LIST = "prop", "120210000000555", "proplist"
FAST = RetryPolicy(max_attempts=2, backoff_multiplier=0.01, backoff_max=0.02, read_timeout=5)
PEOPLE, ROUNDS, SEEDS = 24, 8, (3, 17)


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with running_mock(tmp_path_factory.mktemp("prop_mock")) as handle:
        yield handle


def client_for(platform: str, mock):
    if platform == "meta":
        return MetaAudienceClient("meta_ads", mock.meta_url, mock.meta_token, policy=FAST)
    return MailchimpClient("mailchimp", mock.mailchimp_url, mock.mailchimp_token, policy=FAST)


def sync(platform: str, wh: Path, state: Path, mock, at) -> None:
    client = client_for(platform, mock)
    kind = "ad" if platform == "meta" else "email"
    with client:
        try:
            run_sync(
                wh, state, segment=SEG, destination=f"{platform}_dest",
                audience_id=AUDIENCE if platform == "meta" else LIST, mode="mirror",
                fields={}, kind=kind, client=client, batch_size=5, as_of=at,
                allow_mass_removal=True,
            )  # fmt: skip
        except Exception as error:  # a 5xx that outlasted the retries: the run failed
            assert "HTTP 5" in str(error) or "connection" in str(error), error


def random_answer(rng: random.Random, platform: str, values: list[str]) -> dict | None:
    """One random answer shape (a fault action), or None for a plain success."""
    some = rng.sample(values, k=min(len(values), rng.randint(1, 3))) if values else []
    choice = rng.choice(["ok", "reject", "omit", "html", "truncated", "5xx"])
    if choice == "ok":
        return None
    if choice == "reject":
        return {"type": "reject_rows", "values": some, "error": "looks fake or invalid"}
    if choice == "omit":
        return {"type": "answer", "omit": some}
    if choice in ("html", "truncated"):
        return {"type": "answer", "body": choice}
    return {"type": "status", "status": 503, "content_type": "html"}


def held_at_destination(platform: str, mock, keys_by_ref: dict[str, str]) -> set[str]:
    """Subject keys the platform holds now (Mailchimp: subscribed contacts)."""
    if platform == "meta":
        return set(mock.meta_members(AUDIENCE))
    return {
        keys_by_ref[m["hash"]] for m in mock.mailchimp_members(LIST) if m["status"] == "subscribed"
    }


def our_state(wh: Path, platform: str) -> dict[str, str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return dict(
            con.execute(
                "SELECT subject_key, fields_hash FROM activation.sync_state WHERE destination = ?",
                [f"{platform}_dest"],
            ).fetchall()
        )
    finally:
        con.close()


def refused_adds(wh: Path, platform: str) -> set[str]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        rows = con.execute(
            "SELECT subject_key FROM activation.sync_rejections WHERE destination = ? "
            "AND operation = 'add' AND permanent",
            [f"{platform}_dest"],
        ).fetchall()
    finally:
        con.close()
    return {k for (k,) in rows}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("platform", ["meta", "mailchimp"])
def test_state_never_claims_more_than_the_answer_confirms_and_a_rerun_converges(
    mock, tmp_path: Path, platform: str, seed: int
) -> None:
    mock.reset()
    rng = random.Random(seed)
    emails = fake_emails(PEOPLE, seed=seed)
    wh, state = tmp_path / "wh.duckdb", tmp_path / "state"
    new_warehouse(wh, emails)
    keys = {i + 1: subject_key(e) for i, e in enumerate(emails)}
    keys_by_ref = {subscriber_hash(normalize_email(e)): subject_key(e) for e in emails}
    sent_values = {cid: (keys[cid] if platform == "meta" else normalize_email(e))
                   for cid, e in zip(keys, emails, strict=True)}  # fmt: skip
    at = T0
    for _ in range(ROUNDS):
        members = sorted(rng.sample(sorted(keys), k=rng.randint(PEOPLE // 3, PEOPLE)))
        with connect(wh) as con:
            set_audience(con, SEG, members)
        for _ in range(rng.randint(1, 3)):
            answer = random_answer(rng, platform, [sent_values[c] for c in members])
            if answer is not None:
                mock.add_fault(platform, {"method": rng.choice(["POST", "DELETE"])}, answer)
        at += timedelta(minutes=10)
        sync(platform, wh, state, mock, at)
        mock.clear_faults(platform)

        ours = our_state(wh, platform)
        theirs = held_at_destination(platform, mock, keys_by_ref)
        claimed = {k for k, h in ours.items() if h != PENDING_HASH}
        assert claimed <= theirs, "state claims rows the platform does not hold"
        assert theirs <= set(ours), "the platform holds rows our state does not know"

    # answers back to normal, past every back-off: the destination is the audience
    sync(platform, wh, state, mock, at + timedelta(days=8))
    sync(platform, wh, state, mock, at + timedelta(days=16))
    with connect(wh) as con:
        audience = {k for (k,) in con.execute(
            "SELECT subject_key FROM activation.audience_members WHERE segment = ?", [SEG]
        ).fetchall()}  # fmt: skip
    refused = refused_adds(wh, platform)
    theirs = held_at_destination(platform, mock, keys_by_ref)
    # nothing beyond the audience, and all of it but what the platform refused for good (it
    # may still hold such a row from an earlier send whose answer confirmed nothing)
    assert audience - refused <= theirs <= audience
    pending = {k for k, h in our_state(wh, platform).items() if h == PENDING_HASH}
    assert pending <= refused
