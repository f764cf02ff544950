"""Which Dagster executor runs the steps of every job, chosen from the environment in one place.

``ACTIVATION_EXECUTOR`` (read when the definitions load):

``in_process`` (default)  every step in the run's own process (:func:`in_process_by_default`);
                          a run config may still select ``multiprocess``.
``multiprocess``          Dagster's default executor: each step in a child process of the run,
                          on the machine of the run (a run config may select ``in_process``).
``celery``                ``dagster-celery``'s executor: each step is a Celery task that any
                          worker may take (``deploy/``). The broker and result backend come
                          from ``ACTIVATION_CELERY_BROKER`` and ``ACTIVATION_CELERY_BACKEND``
                          (e.g. ``redis://redis:6379/0``), read by Dagster at run time
                          (``{"env": ...}`` config), never written into the definitions.
                          Needs the ``deploy`` extra (``pip install '.[deploy]'``).

Why in process by default: under Dagster's multiprocess executor each step is a fresh Python
process that imports Dagster and the definitions again: about 3 to 4 seconds per step on two
cores, ten times the work of a demo-sized segment, and most steps of every job here (segment,
audience and their checks) queue for the ``duckdb`` pool one at a time anyway, so separate
processes buy nothing on one machine.

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
pool slot, a fork and its own event-log round trips (about 3 s per step).
:func:`in_process_by_default` keeps the run-config shape of Dagster's default executor
(``execution: {config: {in_process: {}}}`` or ``{multiprocess: {...}}``): a run config written
for the default still works.

Whatever the executor, nothing in a step relies on sharing a process or a disk with another
step: the journal and the pair locks live in the warehouse (:mod:`orchestrator.sync.journal`,
:mod:`orchestrator.sync.pair_lock`).

Source: Dagster's ``multi_or_in_process_executor`` (its config selector) and
``dagster_celery.celery_executor``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg
from dagster._config import Field, Selector
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    multi_or_in_process_executor,
)

#: The values ``ACTIVATION_EXECUTOR`` accepts (the first is the default).
EXECUTORS = ("in_process", "multiprocess", "celery")


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


def _celery() -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor  # optional: the deploy extra

    return celery_executor.configured(
        {
            "broker": {"env": "ACTIVATION_CELERY_BROKER"},
            "backend": {"env": "ACTIVATION_CELERY_BACKEND"},
        },
        name="celery",
    )


def executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor ``ACTIVATION_EXECUTOR`` names (see the module docstring; unset or empty:
    ``in_process``).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        ImportError: ``celery`` without ``dagster-celery`` installed.
    """
    env = os.environ if environ is None else environ
    name = (env.get("ACTIVATION_EXECUTOR") or EXECUTORS[0]).strip().lower()
    if name not in EXECUTORS:
        raise ValueError(f"ACTIVATION_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")
    if name == "in_process":
        return in_process_by_default()
    if name == "multiprocess":
        return multi_or_in_process_executor
    return _celery()


__all__ = ["EXECUTORS", "executor_from_env", "in_process_by_default"]
