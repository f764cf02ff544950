"""The Python reference normalization of non-ASCII addresses, made available to PostgreSQL SQL.

PostgreSQL cannot run the address rules of :mod:`orchestrator.pseudonymize` on a non-ASCII
address in SQL: NFKC exists (``normalize``) but ``lower()`` follows the database's
``LC_CTYPE`` (under ``C`` it leaves ``É`` upper case), ICU's lowercase is the full mapping
(``İ`` becomes two code points), and the UTS #46 domain fold has no SQL form. So the one
implementation, :func:`orchestrator.pseudonymize.normalize_email`, runs here in Python, once
per distinct non-ASCII raw value, and its results are kept in

``activation.address_forms``: raw TEXT primary key, email TEXT (base form, NULL when
invalid), google_email TEXT (Google form, NULL when invalid).

The SQL functions ``activation.activation_normalize_email(text)`` and
``activation.activation_normalize_email_google(text)`` (the names DuckDB registers as Python
functions, so the shared key SQL is the same text on both backends) read that table and
**raise** for a value that is not in it, so a key is never computed from a missing form.
:func:`prepare_address_forms` fills the table for the columns the key SQL reads
(``activation.src_customers.email``, ``activation.src_privacy_requests.subject_key``, the
intake tables' subject keys) and deletes forms no source holds any more (an erased address
leaves the table at the next preparation). An ASCII address never needs a form: the key SQL
handles it in SQL, where ``lower()`` of ASCII is the same under every locale.
"""

from __future__ import annotations

from typing import Any

from orchestrator.pseudonymize import normalize_email
from orchestrator.warehouse.product_schema import DEFAULT_PRODUCT_SCHEMA, product_schema_of

#: The relations and columns whose non-ASCII values the key SQL normalizes.
SOURCES: tuple[tuple[str, str], ...] = (
    ("activation.src_customers", "email"),
    ("activation.src_privacy_requests", "subject_key"),
    ("activation.consent_intake", "subject_key"),
)

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.address_forms (
    raw          TEXT PRIMARY KEY,
    email        TEXT,
    google_email TEXT
);
"""

_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{name}(value TEXT) RETURNS TEXT
LANGUAGE plpgsql STABLE STRICT AS $fn$
DECLARE
    form TEXT;
BEGIN
    SELECT f.{column} INTO form FROM {schema}.address_forms AS f WHERE f.raw = value;
    IF NOT FOUND THEN
        RAISE EXCEPTION '{schema}.{name}: this non-ASCII address has no prepared form; '
            'run orchestrator.warehouse.address_forms.prepare_address_forms first';
    END IF;
    RETURN form;
END
$fn$
"""


def create_address_functions(raw_con: Any, schema: str = DEFAULT_PRODUCT_SCHEMA) -> None:
    """Create ``activation.address_forms`` and the two SQL functions (idempotent) in the
    product schema ``schema``. ``raw_con``: a psycopg connection (this DDL is PostgreSQL's
    own, not shared SQL)."""
    raw_con.execute(_DDL.format(schema=schema))
    for name, column in (
        ("activation_normalize_email", "email"),
        ("activation_normalize_email_google", "google_email"),
    ):
        raw_con.execute(_FUNCTION.format(name=name, column=column, schema=schema))


def _existing(con: Any, relation: str) -> bool:
    schema, name = relation.split(".")
    if schema == DEFAULT_PRODUCT_SCHEMA:
        schema = product_schema_of(con)
    (found,) = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()
    return bool(found)


def prepare_address_forms(con: Any, sources: tuple[tuple[str, str], ...] = SOURCES) -> int:
    """Add the form of every non-ASCII value of ``sources`` missing from
    ``activation.address_forms`` and delete forms no source holds; return the forms added.

    ``con``: a :class:`orchestrator.warehouse.postgres.PostgresConnection`. Relations that do
    not exist yet are skipped. Costs one scan of each source column (the ASCII test) plus
    the Python normalization of new non-ASCII values only.
    """
    present = [(r, c) for r, c in sources if _existing(con, r)]
    if not present:
        return 0
    union = " UNION ".join(
        f"SELECT CAST({column} AS VARCHAR) AS raw FROM {relation} "
        f"WHERE {column} IS NOT NULL AND strlen(CAST({column} AS VARCHAR)) "
        f"<> length(CAST({column} AS VARCHAR))"
        for relation, column in present
    )
    con.execute("CREATE TEMP TABLE IF NOT EXISTS _address_raw (raw VARCHAR)")
    con.execute("DELETE FROM _address_raw")
    con.execute(f"INSERT INTO _address_raw {union}")
    con.execute(
        "DELETE FROM activation.address_forms WHERE raw NOT IN (SELECT raw FROM _address_raw)"
    )
    missing = [
        raw
        for (raw,) in con.execute(
            "SELECT raw FROM _address_raw WHERE raw NOT IN "
            "(SELECT raw FROM activation.address_forms)"
        ).fetchall()
    ]
    if missing:
        con.executemany(
            "INSERT INTO activation.address_forms VALUES (?, ?, ?) ON CONFLICT (raw) DO NOTHING",
            [(raw, normalize_email(raw), normalize_email(raw, google=True)) for raw in missing],
        )
    con.execute("DROP TABLE _address_raw")
    return len(missing)


__all__ = ["SOURCES", "create_address_functions", "prepare_address_forms"]
