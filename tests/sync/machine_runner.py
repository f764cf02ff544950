"""Run one Mailchimp sync in a process of its own, as another machine would (machine-loss tests).

    python -m tests.sync.machine_runner WAREHOUSE STATE_DIR MAILCHIMP_URL TOKEN LIST \
        BATCH_SIZE DIE_AFTER CALL_DELAY_S

``WAREHOUSE``: a DuckDB file, or a ``postgresql://`` URL (its password in the environment
variable :data:`tests.postgres.PASSWORD_ENV`).
``STATE_DIR``: this "machine's" own scratch folder. ``DIE_AFTER``: SIGKILL the process right
after the DIE_AFTER-th client call returned (the destination applied it; its answer is in no
journal yet); 0: never. ``CALL_DELAY_S``: sleep before each call (so two runs overlap).
Journal windows hold two batches here, so a kill lands after some windows' answers were
written and before others'. Exit status 3 with the error on stderr when another run holds the
pair (``SyncInProgressError``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from destinations.http import RetryPolicy
from destinations.mailchimp import MailchimpClient
from orchestrator.sync import engine
from orchestrator.sync.pair_lock import SyncInProgressError
from orchestrator.warehouse.target import Warehouse

SEGMENT, DESTINATION = "loyal", "mailchimp"


class _Machine(MailchimpClient):
    """A real Mailchimp client that may sleep before each call and die after the n-th."""

    def __init__(self, *args, die_after: int, delay_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._calls, self._die_after, self._delay_s = 0, die_after, delay_s

    def _around(self, call, *args):
        time.sleep(self._delay_s)
        results = call(*args)
        self._calls += 1
        if self._calls == self._die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return results

    def add(self, audience_id, rows):
        return self._around(super().add, audience_id, rows)

    def update(self, audience_id, rows):
        return self._around(super().update, audience_id, rows)

    def remove(self, audience_id, rows, reason):
        return self._around(super().remove, audience_id, rows, reason)


def _warehouse(arg: str) -> Warehouse:
    if arg.startswith("postgresql://"):
        from tests.postgres import warehouse_target

        return warehouse_target(arg)
    return Path(arg)


def main(argv: list[str]) -> int:
    warehouse, state_dir, url, token, list_id, size, die_after, delay = argv
    engine.JOURNAL_WINDOW_ROWS = 2 * int(size)  # two batches per journal window
    policy = RetryPolicy(max_attempts=1)
    client = _Machine(
        DESTINATION, url, token, policy=policy, die_after=int(die_after), delay_s=float(delay)
    )
    try:
        with client:
            report = engine.run_sync(
                _warehouse(warehouse),
                Path(state_dir),
                segment=SEGMENT,
                destination=DESTINATION,
                audience_id=list_id,
                mode="mirror",
                fields={"COUNTRY": "country"},
                kind="email",
                client=client,
                batch_size=int(size),
            )
    except SyncInProgressError as error:
        print(f"SyncInProgressError: {error}", file=sys.stderr)
        return 3
    print(f"adds={report.adds} removes={report.removes} updates={report.updates}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
