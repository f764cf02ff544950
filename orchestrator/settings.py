"""Where things live, read from the environment at run time (never at import).

Environment variables (all optional; defaults suit a checkout of the repository):

``ACTIVATION_PROJECT_DIR``   the project folder: ``activation.yaml``, ``segments/`` and the
                             demo's ``data/`` (default: the current working directory). The one
                             setting an installed package needs: no path in the code assumes
                             the repository's layout.
``ACTIVATION_SEGMENTS_DIR``  segment files folder (default: ``<project>/segments``).
``ACTIVATION_CONFIG``        project configuration file (default: ``<project>/activation.yaml``).
``ACTIVATION_WAREHOUSE``     the DuckDB warehouse file (default:
                             ``<project>/.data/warehouse.duckdb``).
``ACTIVATION_STATE_DIR``     scratch files of syncs (the diff's Parquet), disposable: any
                             local folder (default: ``<project>/.data/state``). The journal and
                             the pair locks live in the warehouse.
``ACTIVATION_DUCKDB_MEMORY_LIMIT``  DuckDB ``memory_limit`` of every connection the product
                             opens (default ``250MB``; DuckDB's own default is 80% of RAM,
                             which let a 1M-customer audience step peak at 756 MiB RSS; at
                             250MB its DuckDB part fits without spilling, bench/README.md).
                             Any size DuckDB accepts (``'1GB'``, ``'512MiB'``...).
``ACTIVATION_DUCKDB_MEMORY_MAX``  how far a step may raise that limit when DuckDB runs out of
                             memory (default ``4GB``; the limit doubles per retry, see
                             :mod:`orchestrator.warehouse.memory`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DUCKDB_MEMORY_LIMIT = "250MB"


def duckdb_config(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The DuckDB configuration for every connection the product opens: ``{"memory_limit":
    <ACTIVATION_DUCKDB_MEMORY_LIMIT or 250MB>}``, to pass as ``duckdb.connect(...,
    config=...)`` or a ``DuckDBResource``'s ``connection_config``. Read from ``environ``
    (default: ``os.environ``) when called, never at import. An invalid size is reported by
    DuckDB when the connection opens (``duckdb.InvalidInputException``)."""
    env = os.environ if environ is None else environ
    limit = (env.get("ACTIVATION_DUCKDB_MEMORY_LIMIT") or "").strip()
    return {"memory_limit": limit or DEFAULT_DUCKDB_MEMORY_LIMIT}


def default_project_dir() -> Path:
    """The project folder when ``ACTIVATION_PROJECT_DIR`` is unset: the current working
    directory (``make`` and ``dagster dev`` run from the project's root)."""
    return Path.cwd()


@dataclass(frozen=True)
class Settings:
    """Resolved paths: ``project_dir``, ``segments_dir``, ``config_path``, ``warehouse_path``
    (DuckDB file) and ``state_dir`` (sync scratch files)."""

    project_dir: Path
    segments_dir: Path
    config_path: Path
    warehouse_path: Path
    state_dir: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        project = Path(env.get("ACTIVATION_PROJECT_DIR") or default_project_dir())
        return cls(
            project_dir=project,
            segments_dir=Path(env.get("ACTIVATION_SEGMENTS_DIR") or project / "segments"),
            config_path=Path(env.get("ACTIVATION_CONFIG") or project / "activation.yaml"),
            warehouse_path=Path(
                env.get("ACTIVATION_WAREHOUSE") or project / ".data" / "warehouse.duckdb"
            ),
            state_dir=Path(env.get("ACTIVATION_STATE_DIR") or project / ".data" / "state"),
        )
