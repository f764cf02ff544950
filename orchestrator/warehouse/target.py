"""Where the warehouse is, as one small value every stage receives: :class:`WarehouseTarget`.

The stages that open the warehouse briefly and often (the sync's pair lock, diff and journal
windows, the privacy requests and receipts, the checks, the sensors, the CLI) take a
:class:`WarehouseTarget` (or, as before, the path of a DuckDB file) and open it with
:func:`orchestrator.warehouse.connect.connect`, which dispatches on the backend. It is a frozen
value (a config, a path, a password kept out of ``repr``), so it crosses process boundaries
with the step that carries it and assumes nothing about the machine it runs on.

Sources of a target: :meth:`WarehouseTarget.from_config` (``warehouse:`` of
``activation.yaml`` and the resolved DuckDB path: the CLI), :meth:`WarehouseTarget.
from_resource` (the step's Dagster resource: ``DuckDBResource`` or
:class:`orchestrator.warehouse.resources.PostgresResource`, whose password Dagster read from
its ``EnvVar``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.config import DuckDBWarehouse, PostgresWarehouse
from orchestrator.warehouse.product_schema import DEFAULT_PRODUCT_SCHEMA

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.config import ProjectConfig


@dataclass(frozen=True)
class WarehouseTarget:
    """A warehouse to open: ``config`` (:class:`~orchestrator.config.DuckDBWarehouse` or
    :class:`~orchestrator.config.PostgresWarehouse`), ``duckdb_path`` (the DuckDB file, resolved;
    None for PostgreSQL) and ``password`` (PostgreSQL: given by a Dagster resource; None: read
    from ``config.password_env`` when a connection opens). The password never appears in
    ``repr`` or comparisons."""

    config: DuckDBWarehouse | PostgresWarehouse
    duckdb_path: Path | None = None
    password: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def duckdb(cls, path: Path | str) -> WarehouseTarget:
        """The DuckDB file at ``path``."""
        return cls(DuckDBWarehouse(), Path(path))

    @classmethod
    def from_config(
        cls, config: DuckDBWarehouse | PostgresWarehouse, duckdb_path: Path | str
    ) -> WarehouseTarget:
        """``warehouse:`` of ``activation.yaml``; ``duckdb_path``: the file a DuckDB warehouse
        uses (:func:`orchestrator.warehouse.factory.duckdb_path_for`), ignored for PostgreSQL."""
        if isinstance(config, PostgresWarehouse):
            return cls(config)
        return cls(config, Path(duckdb_path))

    @classmethod
    def from_resource(cls, resource: Any) -> WarehouseTarget:
        """The target of a step's ``warehouse`` resource: a ``DuckDBResource`` (its
        ``database``) or a :class:`~orchestrator.warehouse.resources.PostgresResource` (its
        config and the password Dagster resolved).

        Raises:
            TypeError: any other resource.
        """
        database = getattr(resource, "database", None)
        if isinstance(database, str):  # ProductDuckDBResource carries the product schema
            schema = getattr(resource, "product_schema", DEFAULT_PRODUCT_SCHEMA)
            return cls(DuckDBWarehouse(product_schema=schema), Path(database))
        to_config = getattr(resource, "config", None)
        if callable(to_config):
            return cls(to_config(), password=resource.password)
        raise TypeError(f"not a warehouse resource: {type(resource).__name__}")

    @property
    def kind(self) -> Literal["duckdb", "postgres"]:
        """``duckdb`` or ``postgres``."""
        return self.config.kind

    def describe(self) -> str:
        """What error messages name: the DuckDB file, or ``postgres://user@host:port/db``
        (never the password)."""
        if isinstance(self.config, PostgresWarehouse):
            from orchestrator.warehouse.postgres import PostgresTarget

            return PostgresTarget.from_url(self.config.url).describe()
        return str(self.duckdb_path)

    def resolved_password(self, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
        """PostgreSQL's ``(password, where it came from)``: this target's own, else the
        environment variable ``config.password_env`` names.

        Raises:
            orchestrator.warehouse.errors.WarehouseAuthFailed: neither is set.
        """
        if self.password:
            return self.password, "the resource's password"
        from orchestrator.warehouse.factory import postgres_password

        assert isinstance(self.config, PostgresWarehouse)
        return (
            postgres_password(self.config, environ),
            f"the environment variable {self.config.password_env}",
        )


#: What the stages accept as "the warehouse": a target, or the path of a DuckDB file.
Warehouse = WarehouseTarget | Path | str


def as_target(where: Warehouse, project: ProjectConfig | None = None) -> WarehouseTarget:
    """``where`` as a :class:`WarehouseTarget` (a path means a DuckDB file). With ``project``,
    a target that names no product schema of its own (the default ``activation``) takes the
    project's (``warehouse.product_schema``), so every connection the target opens names it."""
    target = where if isinstance(where, WarehouseTarget) else WarehouseTarget.duckdb(where)
    if project is None or target.config.product_schema != DEFAULT_PRODUCT_SCHEMA:
        return target
    config = target.config.model_copy(update={"product_schema": project.product_schema})
    return replace(target, config=config)


__all__ = ["Warehouse", "WarehouseTarget", "as_target"]
