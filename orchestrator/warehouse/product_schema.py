"""The schema of the product's own tables: ``activation`` unless ``activation.yaml`` says
otherwise (``warehouse.product_schema``).

The shared SQL names the product's tables ``activation.<table>`` everywhere (the stages, the
views of the source model, the DDL). A project that configures another name gets every
statement rewritten where it is executed, in one place per backend:

- DuckDB: :func:`orchestrator.warehouse.connect.connect` (and the Dagster resource) hand out a
  :class:`ProductSchemaConnection` around the DuckDB connection, whose ``execute`` /
  ``executemany`` / ``sql`` run :func:`qualify` on the text first;
- PostgreSQL: :class:`orchestrator.warehouse.postgres.PostgresConnection` runs :func:`qualify`
  on each statement rendered for the server.

:func:`qualify` works on SQLGlot's tokens, so it is exact: it renames the identifier
``activation`` where it qualifies a name (``activation.t``, ``"activation".t``: followed by a
dot) or is the schema of ``CREATE`` / ``DROP SCHEMA``, and the string literal
``'activation'`` (the catalog queries: ``information_schema.tables WHERE table_schema =
'activation'``); text inside other string
literals, quoted identifiers and comments, and names that merely contain the word
(``activation_normalize_email``, a column ``x.activation``), are left alone. With the default
name nothing is rewritten and no wrapper is made: the default costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import TokenType

#: The schema of the product's tables when the project does not name one, and the spelling
#: the shared SQL uses.
DEFAULT_PRODUCT_SCHEMA = "activation"

#: A plain SQL identifier: lowercase letters, digits and ``_``, not starting with a digit, at
#: most 63 characters (PostgreSQL's limit), so it never needs quoting on either backend.
PRODUCT_SCHEMA_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"

#: Schemas a product schema can never be: each backend's own catalogs and default schemas,
#: where the user's tables (or the engine's) live.
RESERVED_SCHEMAS = frozenset(
    {"main", "public", "information_schema", "pg_catalog", "pg_toast", "temp", "pg_temp"}
)

_NAMES = (TokenType.VAR, TokenType.IDENTIFIER)


def is_plain_identifier(name: str) -> bool:
    """True when ``name`` matches :data:`PRODUCT_SCHEMA_PATTERN`."""
    return re.fullmatch(PRODUCT_SCHEMA_PATTERN, name) is not None


def _names_a_schema(tokens: list, index: int) -> bool:
    """True when the name at ``index`` follows ``SCHEMA`` (``CREATE SCHEMA [IF NOT EXISTS]``,
    ``DROP SCHEMA [IF EXISTS]``)."""
    back = index - 1
    while back >= 0 and tokens[back].text.upper() in ("IF", "NOT", "EXISTS"):
        back -= 1
    return back >= 0 and tokens[back].token_type == TokenType.SCHEMA


@lru_cache(maxsize=4096)
def qualify(sql: str, schema: str, dialect: str = "duckdb") -> str:
    """``sql`` with the product's schema named ``schema`` instead of ``activation``.

    Rewrites, by SQLGlot's tokens of ``dialect``: an identifier ``activation`` (bare, any
    case, or double-quoted) directly followed by ``.`` or directly after ``SCHEMA``
    (``CREATE SCHEMA IF NOT EXISTS activation``), and a string literal exactly
    ``'activation'``. Returns ``sql`` itself when ``schema`` is the default.

    Raises:
        ValueError: ``schema`` is not a plain identifier (:data:`PRODUCT_SCHEMA_PATTERN`).
        sqlglot.errors.TokenError: ``sql`` cannot be tokenized (an unterminated literal).
    """
    if schema == DEFAULT_PRODUCT_SCHEMA:
        return sql
    if not is_plain_identifier(schema):
        raise ValueError(f"product schema {schema!r} must match {PRODUCT_SCHEMA_PATTERN}")
    tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    out: list[str] = []
    last = 0
    for index, token in enumerate(tokens):
        if token.token_type in _NAMES:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            named = (
                token.text == DEFAULT_PRODUCT_SCHEMA
                if token.token_type == TokenType.IDENTIFIER
                else token.text.lower() == DEFAULT_PRODUCT_SCHEMA
            )
            qualifier = following is not None and following.token_type == TokenType.DOT
            if not (named and (qualifier or _names_a_schema(tokens, index))):
                continue
            replacement = f'"{schema}"' if token.token_type == TokenType.IDENTIFIER else schema
        elif token.token_type == TokenType.STRING and token.text == DEFAULT_PRODUCT_SCHEMA:
            replacement = f"'{schema}'"
        else:
            continue
        out.append(sql[last : token.start] + replacement)
        last = token.end + 1
    return "".join(out) + sql[last:] if out else sql


class ProductSchemaConnection:
    """A DuckDB connection whose statements name the product schema ``schema``: ``execute``,
    ``executemany`` and ``sql`` rewrite their text with :func:`qualify`; everything else
    (``fetchall``, ``arrow``, ``begin``, ``create_function``, ``close``...) is the DuckDB
    connection's own. ``raw``: the DuckDB connection. Made only for a non-default schema."""

    dialect = "duckdb"

    def __init__(self, raw: Any, schema: str) -> None:
        self.raw = raw
        self.product_schema = schema

    def execute(
        self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> ProductSchemaConnection:
        """DuckDB's ``execute`` of ``qualify(sql)``; returns self (results read from it)."""
        if parameters is None:
            self.raw.execute(qualify(sql, self.product_schema))
        else:
            self.raw.execute(qualify(sql, self.product_schema), parameters)
        return self

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> ProductSchemaConnection:
        """DuckDB's ``executemany`` of ``qualify(sql)``; returns self."""
        self.raw.executemany(qualify(sql, self.product_schema), parameters)
        return self

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        """DuckDB's ``sql`` (a relation) of ``qualify(query)``."""
        return self.raw.sql(qualify(query, self.product_schema), *args, **kwargs)

    query = sql

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def __enter__(self) -> ProductSchemaConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def with_product_schema(con: Any, schema: str) -> Any:
    """``con`` (a DuckDB connection) naming the product schema ``schema``: itself for the
    default, else a :class:`ProductSchemaConnection`."""
    if schema == DEFAULT_PRODUCT_SCHEMA:
        return con
    return ProductSchemaConnection(con, schema)


def product_schema_of(con: Any) -> str:
    """The product schema a connection's statements name (``activation`` for a plain DuckDB
    connection), for the few places that pass it as a value (a bound parameter, metadata)."""
    return getattr(con, "product_schema", DEFAULT_PRODUCT_SCHEMA)


def is_duckdb(con: Any) -> bool:
    """True for a DuckDB connection (plain or :class:`ProductSchemaConnection`), False for a
    server's (:class:`orchestrator.warehouse.postgres.PostgresConnection`)."""
    return getattr(con, "dialect", "duckdb") == "duckdb"


__all__ = [
    "DEFAULT_PRODUCT_SCHEMA",
    "PRODUCT_SCHEMA_PATTERN",
    "RESERVED_SCHEMAS",
    "ProductSchemaConnection",
    "is_duckdb",
    "is_plain_identifier",
    "product_schema_of",
    "qualify",
    "with_product_schema",
]
