"""How the steps of a run are executed: in the run's own process unless the run asks otherwise.

Under Dagster's default multiprocess executor each step is a fresh Python process that imports
Dagster and the definitions again: about 3 to 4 seconds per step on two cores, ten times the
work of a demo-sized segment, and most steps of every job here (segment, audience and their
checks) queue for the ``duckdb`` pool one at a time anyway, so separate processes buy nothing.

Measured on two shared cores with the demo warehouse and nothing to send (``make demo`` run a
second time, 33 steps; one segment's job, 8 steps):

=============================================  ==============  ===============
executor                                       all segments    one segment
=============================================  ==============  ===============
multiprocess, spawn (Dagster's default)        137 s           34 s
multiprocess, forkserver, definitions preloaded 84 to 118 s    not measured
in process                                     17 to 25 s      7 s
=============================================  ==============  ===============

The forkserver cut a worker's start from about 6 s to 1 s, but each step still waits for the
pool slot, a fork and its own event-log round trips (about 3 s per step). So every job runs in
process by default. :func:`in_process_by_default` keeps the run-config shape of Dagster's
default executor (``execution: {config: {in_process: {}}}`` or ``{multiprocess: {...}}``):
a run config written for the default still works, and a run may still ask for
``multiprocess`` (e.g. syncs to several destinations at once on a bigger machine).

Source: Dagster's ``multi_or_in_process_executor`` (its config selector).
"""

import dagster as dg
from dagster._config import Field, Selector
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    multi_or_in_process_executor,
)


def in_process_by_default() -> dg.ExecutorDefinition:
    """Dagster's in-process-or-multiprocess executor, with ``in_process`` as the default.

    Every step runs in the run's process unless the run config selects ``multiprocess``.
    """
    return dg.ExecutorDefinition(
        name="in_process_by_default",
        config_schema=Field(
            Selector({"multiprocess": MULTI_PROC_CONFIG, "in_process": IN_PROC_CONFIG}),
            default_value={"in_process": {}},
        ),
        executor_creation_fn=multi_or_in_process_executor.executor_creation_fn,
        requirements=multi_or_in_process_executor.get_requirements,
    )
