"""Run one Meta sync in a process that SIGKILLs itself at a chosen point (crash-safety tests).

    python -m tests.sync.crash_runner WAREHOUSE STATE_DIR META_URL TOKEN AUDIENCE \
        BATCH_SIZE CRASH_AFTER {after_journal|before_journal}

``after_journal``: die from the engine's ``on_batch`` hook after the CRASH_AFTER-th call (its
answers are journaled with the next window's intents or the fold, so they may be lost too).
``before_journal``: die right after the CRASH_AFTER-th call returned, before its answers were
journaled (the destination applied the batch, the journal only holds the intent).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from destinations.http import RetryPolicy
from destinations.meta import MetaAudienceClient
from orchestrator.sync.engine import run_sync

SEGMENT, DESTINATION = "loyal", "meta_ads"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _DieAfterCalls(MetaAudienceClient):
    """A real Meta client that kills the process once ``n`` calls have been answered."""

    def __init__(self, *args, crash_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._left = crash_after

    def _send_chunk(self, method, audience_id, rows):
        answered = super()._send_chunk(method, audience_id, rows)
        self._left -= 1
        if self._left == 0:
            _die()
        return answered


def main(argv: list[str]) -> None:
    warehouse, state_dir, url, token, audience, size, crash_after, point = argv
    crash_after_n = int(crash_after)
    policy = RetryPolicy(max_attempts=1)
    if point == "before_journal":
        client = _DieAfterCalls("meta_ads", url, token, policy=policy, crash_after=crash_after_n)
        hook = None
    else:
        client = MetaAudienceClient("meta_ads", url, token, policy=policy)

        def hook(batches: int) -> None:
            if batches == crash_after_n:
                _die()

    run_sync(
        Path(warehouse),
        Path(state_dir),
        segment=SEGMENT,
        destination=DESTINATION,
        audience_id=audience,
        mode="mirror",
        fields={},
        kind="ad",
        client=client,
        batch_size=int(size),
        on_batch=hook,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
