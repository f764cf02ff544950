"""Which Dagster executor runs the steps, chosen from the environment in one place.

``ACTIVATION_EXECUTOR`` (read when the definitions load):

``multiprocess`` (default)  Dagster's default executor: each step in a child process of the
                            run, on the machine of the run (``make demo``, ``make ui``).
``celery``                  ``dagster-celery``'s executor: each step is a Celery task that any
                            worker may take (``deploy/``). The broker and result backend come
                            from ``ACTIVATION_CELERY_BROKER`` and ``ACTIVATION_CELERY_BACKEND``
                            (e.g. ``redis://redis:6379/0``), read by Dagster at run time
                            (``EnvVar``-style config), never written into the definitions.
                            Needs the ``deploy`` extra (``pip install '.[deploy]'``).

Nothing in a step may rely on sharing a process or a disk with another step: the journal and
the pair locks live in the warehouse (:mod:`orchestrator.sync.journal`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTORS = ("multiprocess", "celery")


def executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition | None:
    """The executor ``ACTIVATION_EXECUTOR`` names (None: Dagster's default).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        ImportError: ``celery`` without ``dagster-celery`` installed.
    """
    env = os.environ if environ is None else environ
    name = (env.get("ACTIVATION_EXECUTOR") or "multiprocess").strip().lower()
    if name not in EXECUTORS:
        raise ValueError(f"ACTIVATION_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")
    if name == "multiprocess":
        return None
    from dagster_celery import celery_executor  # optional: the deploy extra

    return celery_executor.configured(
        {
            "broker": {"env": "ACTIVATION_CELERY_BROKER"},
            "backend": {"env": "ACTIVATION_CELERY_BACKEND"},
        },
        name="celery",
    )


__all__ = ["EXECUTORS", "executor_from_env"]
