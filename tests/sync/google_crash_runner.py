"""Run one Google sync in a process that SIGKILLs itself at a chosen point (crash-safety tests).

    python -m tests.sync.google_crash_runner WAREHOUSE STATE_DIR GOOGLE_URL TOKEN AUDIENCE \
        STATUS_WAIT_S {after_submit|after_journal|in_confirm}

``after_submit``: die right after Google accepted the first upload (a request id in hand, not
journaled). ``after_journal``: die after the first batch was sent and its outstanding request
taken from the client, before its answers and request lines were written (they go with the
next journal window or the final fold). ``in_confirm``: die while the run reads the status of
a request left by an earlier run, before anything about it is journaled.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from destinations.google import GoogleAudienceClient
from destinations.http import RetryPolicy
from orchestrator.sync.engine import run_sync

SEGMENT, DESTINATION = "loyal", "google_ads"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Dying(GoogleAudienceClient):
    """A real Google client that kills the process at ``point``."""

    def __init__(self, *args, point: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._point = point

    def _submit(self, op, audience_id, rows):
        answer = super()._submit(op, audience_id, rows)
        if self._point == "after_submit":
            _die()
        return answer

    def request_status(self, request_id):
        if self._point == "in_confirm" and not self._submitted_here:
            _die()
        return super().request_status(request_id)

    def _send(self, op, audience_id, rows):
        self._submitted_here = True
        return super()._send(op, audience_id, rows)

    _submitted_here = False


def main(argv: list[str]) -> None:
    warehouse, state_dir, url, token, audience, wait_s, point = argv
    client = _Dying(
        DESTINATION, url, token, account_id="1234567890", point=point,
        policy=RetryPolicy(max_attempts=1), status_wait_s=float(wait_s), poll_interval_s=0.02,
    )  # fmt: skip

    def hook(batches: int) -> None:
        if point == "after_journal" and batches == 1:
            _die()

    run_sync(
        Path(warehouse), Path(state_dir), segment=SEGMENT, destination=DESTINATION,
        audience_id=audience, mode="mirror", fields={}, kind="ad", normalization="google",
        client=client, on_batch=hook,
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
