"""The mock destinations alone: a tight loop of maximum-size batches, no product code.

Request bodies are built before the clock starts; one ``requests.Session`` per platform
(keep-alive), one request at a time, like a sync. Meta: ``POST /meta/v19.0/<audience>/users``
with 10,000 hashes; Mailchimp: ``POST /mailchimp/3.0/lists/<list>`` with 500 subscribed
members (synthetic ``probe<i>@example.org`` addresses) and one merge field. The audiences are
the probe's own (``bench-probe``), so the benchmark's audiences are untouched.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import requests

from bench import measure

META_BATCH = 10_000
MAILCHIMP_BATCH = 500
PROBE_AUDIENCE = "bench-probe"


def _meta_bodies(batches: int) -> list[bytes]:
    bodies = []
    for b in range(batches):
        data = [hashlib.sha256(f"probe-{b}-{i}".encode()).hexdigest() for i in range(META_BATCH)]
        payload = {"payload": {"schema": "EMAIL_SHA256", "data": data}}
        bodies.append(json.dumps(payload, separators=(",", ":")).encode())
    return bodies


def _mailchimp_bodies(batches: int) -> list[bytes]:
    bodies = []
    for b in range(batches):
        members = [
            {
                "email_address": f"probe{b * MAILCHIMP_BATCH + i}@example.org",
                "status": "subscribed",
                "merge_fields": {"COUNTRY": "FR"},
            }
            for i in range(MAILCHIMP_BATCH)
        ]
        body = {"members": members, "update_existing": True}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def _loop(session: requests.Session, url: str, bodies: list[bytes], rows: int) -> dict[str, Any]:
    started = time.perf_counter()
    for body in bodies:
        response = session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=120
        )
        response.raise_for_status()
    seconds = time.perf_counter() - started
    return {
        "batches": len(bodies),
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": measure.rate(rows, seconds),
        "bytes": sum(len(b) for b in bodies),
    }


def probe_stage(job: dict[str, Any]) -> dict[str, Any]:
    """Measure each mock platform's own throughput.

    Job fields: ``meta_url``, ``meta_token``, ``mailchimp_url``, ``mailchimp_token``,
    ``meta_batches``, ``mailchimp_batches`` (at least 1 each).
    """
    meta_batches = max(1, int(job["meta_batches"]))
    mc_batches = max(1, int(job["mailchimp_batches"]))
    meta_bodies = _meta_bodies(meta_batches)
    mc_bodies = _mailchimp_bodies(mc_batches)
    with requests.Session() as meta:
        meta.headers["Authorization"] = f"Bearer {job['meta_token']}"
        meta_url = f"{job['meta_url']}/v19.0/{PROBE_AUDIENCE}/users"
        meta_result = _loop(meta, meta_url, meta_bodies, meta_batches * META_BATCH)
    with requests.Session() as mailchimp:
        mailchimp.auth = ("bench", job["mailchimp_token"])
        mc_url = f"{job['mailchimp_url']}/lists/{PROBE_AUDIENCE}"
        mc_result = _loop(mailchimp, mc_url, mc_bodies, mc_batches * MAILCHIMP_BATCH)
    return {
        "seconds": meta_result["seconds"] + mc_result["seconds"],
        "rows": meta_result["rows"] + mc_result["rows"],
        "peak_rss_mib": measure.peak_rss_mib(),
        "meta": meta_result,
        "mailchimp": mc_result,
    }


__all__ = ["probe_stage"]
