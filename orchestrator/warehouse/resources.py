"""Dagster resources for the warehouse: ``DuckDBResource`` (``dagster-duckdb``) for the
embedded default, :class:`PostgresResource` for a PostgreSQL server, chosen by
:func:`warehouse_resource` from ``warehouse:`` of ``activation.yaml``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from orchestrator.config import DuckDBWarehouse, PostgresWarehouse, WarehouseConfig
from orchestrator.settings import duckdb_config
from orchestrator.warehouse.product_schema import DEFAULT_PRODUCT_SCHEMA, with_product_schema

if TYPE_CHECKING:
    from orchestrator.warehouse.postgres import PostgresConnection

#: The type of a step's ``warehouse`` resource: ``DuckDBResource`` or :class:`PostgresResource`
#: (both give ``get_connection()``; :meth:`orchestrator.warehouse.target.WarehouseTarget.
#: from_resource` turns either into the target the briefly-opening stages take). Dagster
#: injects a resource parameter by its annotation, which must be a resource class: their
#: common base.
WarehouseResource = dg.ConfigurableResource


class ProductDuckDBResource(DuckDBResource):
    """``DuckDBResource`` whose connections name the product schema ``product_schema``
    (``warehouse.product_schema``; default ``activation``): :meth:`get_connection` yields
    :func:`orchestrator.warehouse.product_schema.with_product_schema` of DuckDB's."""

    product_schema: str = DEFAULT_PRODUCT_SCHEMA

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        with super().get_connection() as con:
            yield with_product_schema(con, self.product_schema)


class PostgresResource(dg.ConfigurableResource):
    """A PostgreSQL warehouse: ``url`` (``postgresql://user@host:port/db``, no password),
    ``password`` (give it as ``dg.EnvVar(<password_env>)``: read at run time, masked by
    Dagster), ``statement_timeout_s`` and ``connect_timeout_s`` (seconds).

    :meth:`get_connection` yields a prepared :class:`~orchestrator.warehouse.postgres.
    PostgresConnection` and closes it, like ``DuckDBResource.get_connection``.
    """

    url: str
    password: str
    statement_timeout_s: float = 600
    connect_timeout_s: float = 10
    search_path: str = "public"
    product_schema: str = DEFAULT_PRODUCT_SCHEMA

    def config(self) -> PostgresWarehouse:
        """This resource as the ``warehouse:`` it came from (the password stays here)."""
        return PostgresWarehouse(
            kind="postgres",
            url=self.url,
            password_env="UNUSED",  # the password is this resource's own field
            statement_timeout_s=self.statement_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            search_path=self.search_path,
            product_schema=self.product_schema,
        )

    @contextmanager
    def get_connection(self) -> Iterator[PostgresConnection]:
        """A connection to the warehouse, its product tables and address functions ready.

        Raises:
            orchestrator.warehouse.errors.WarehouseError: unreachable, wrong password,
                missing grant, timeout (naming the warehouse, never the password).
        """
        from orchestrator.warehouse.factory import open_postgres

        con = open_postgres(
            self.config(), password=self.password, password_from="the resource's password"
        )
        try:
            yield con
        finally:
            con.close()


def warehouse_resource(config: WarehouseConfig, duckdb_path: str) -> dg.ConfigurableResource:
    """The Dagster resource for ``config``: ``DuckDBResource(database=duckdb_path)`` with the
    product's DuckDB settings, or a :class:`PostgresResource` whose password is
    ``dg.EnvVar(config.password_env)``."""
    if isinstance(config, DuckDBWarehouse):
        return ProductDuckDBResource(
            database=duckdb_path,
            connection_config=duckdb_config(),
            product_schema=config.product_schema,
        )
    return PostgresResource(
        url=config.url,
        password=dg.EnvVar(config.password_env),
        statement_timeout_s=config.statement_timeout_s,
        connect_timeout_s=config.connect_timeout_s,
        search_path=config.search_path,
        product_schema=config.product_schema,
    )


__all__ = ["PostgresResource", "ProductDuckDBResource", "WarehouseResource", "warehouse_resource"]
