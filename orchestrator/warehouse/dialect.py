"""The pipeline's SQL written once, rendered per warehouse dialect with SQLGlot.

**The shared SQL** is the text the stages hold: portable SQL that DuckDB (the embedded default)
runs as written, with a few *named dialect helpers* for what warehouses spell differently.
:func:`render` parses it (SQLGlot, DuckDB reader), replaces each helper by the target
dialect's spelling, refuses DuckDB-only syntax, and generates one or more statements for
``postgres``, ``snowflake`` or ``bigquery``. DuckDB runs the shared text itself (rendering
DuckDB to DuckDB would only add a parse per statement).

The named helpers (:data:`HELPERS`), as the shared SQL spells them (DuckDB's own functions):

========================  ===========================  =======================================
helper                    shared SQL                   what it means
========================  ===========================  =======================================
``sha256_hex``            ``sha256(x)``                SHA-256 of the UTF-8 bytes, lowercase hex
``regex_full_match``      ``regexp_full_match(x, p)``  ``p`` matches the whole of ``x`` (RE2)
``regex_contains``        ``regexp_matches(x, p)``     ``p`` matches somewhere in ``x``
``byte_length``           ``strlen(x)``                UTF-8 bytes of ``x`` (ASCII when equal
                                                       to ``length(x)``)
``fingerprint64``         ``hash(x)``                  a 64-bit fingerprint (not comparable
                                                       across backends: a cache check only)
``normalize_email``       ``activation_normalize_      the Python reference for a non-ASCII
                          email(x)`` (and ``_google``) address (:mod:`orchestrator.pseudonymize`)
``regex_replace_all``     ``regexp_replace(x, p, r,    every match replaced
                          'g')``
``max_filtered``          ``list_max(list_filter(xs,   the largest element of a list meeting
                          lambda v: cond))``           a condition
``latest_by``             ``arg_max(v, (k1, k2))``     ``v`` of the row with the largest key
``days``                  ``to_days(n)``               an interval of ``n`` days
``seconds``               ``to_seconds(n)``            an interval of ``n`` seconds
========================  ===========================  =======================================

Date arithmetic is written the standard way (``ts - INTERVAL (n) DAY``, ``CAST(x AS DATE)``),
which SQLGlot renders for every dialect; bulk export is :func:`bulk_export_sql`.

**Where a backend cannot do it in SQL**: the address normalization of a non-ASCII address
(NFKC, the Unicode simple lowercase and the UTS #46 domain fold) runs in Python, once, in
:func:`orchestrator.pseudonymize.normalize_email`. DuckDB calls it as a scalar function;
PostgreSQL reads the same function's results from ``activation.address_forms``, which
:mod:`orchestrator.warehouse.address_forms` fills before the SQL runs. Under a ``C`` locale,
PostgreSQL's ``lower()`` leaves ``É`` alone; only ASCII text ever reaches ``lower()`` in the key
SQL, so the locale cannot change a key.

**DuckDB-only syntax** (:data:`DUCKDB_ONLY`) raises :class:`NonPortableSQL` when rendered for
another dialect, and the lint test (``tests/warehouse/test_dialect.py``) renders every shared
statement the stages run. SQLGlot transpiles some DuckDB SQL without complaint that PostgreSQL
then rejects (``sha256(text)``, ``GROUP BY ALL``): transpiling is not proof, every rendered
PostgreSQL statement also runs against a real server in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.tokens import Tokenizer, TokenType

Dialect = Literal["duckdb", "postgres", "snowflake", "bigquery"]
DIALECTS: tuple[Dialect, ...] = ("duckdb", "postgres", "snowflake", "bigquery")
#: Dialects rendered from the shared SQL (DuckDB runs it as written).
RENDERED: tuple[Dialect, ...] = ("postgres", "snowflake", "bigquery")


class NonPortableSQL(ValueError):
    """The shared SQL uses a construct the target dialect cannot run (the message names the
    construct and the dialect)."""


# --- named helpers ---------------------------------------------------------------------------


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _literal(text: str) -> exp.Literal:
    return exp.Literal.string(text)


def sha256_hex(arg: exp.Expression, dialect: Dialect) -> exp.Expression:
    """SHA-256 of the UTF-8 bytes of ``arg`` as 64 lowercase hex characters (BigQuery's
    ``SHA256`` returns BYTES: wrapped in ``TO_HEX``; PostgreSQL's takes ``bytea``)."""
    if dialect == "postgres":
        utf8 = _fn("convert_to", arg, _literal("UTF8"))
        return _fn("encode", _fn("sha256", utf8), _literal("hex"))
    if dialect == "snowflake":
        return _fn("SHA2", arg, exp.Literal.number(256))
    if dialect == "bigquery":
        return _fn("TO_HEX", _fn("SHA256", arg))
    return _fn("sha256", arg)


def _anchored(pattern: exp.Expression) -> exp.Expression:
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        return _literal(f"^(?:{pattern.this})$")
    return exp.Paren(  # PostgreSQL: ~ and || bind alike, left to right
        this=exp.DPipe(
            this=exp.DPipe(this=_literal("^(?:"), expression=pattern), expression=_literal(")$")
        )
    )


def regex_full_match(arg: exp.Expression, pattern: exp.Expression, dialect: Dialect):
    """True when ``pattern`` matches the whole of ``arg`` (Snowflake's ``REGEXP_LIKE`` is
    anchored already; PostgreSQL and BigQuery get ``^(?:...)$``)."""
    if dialect == "postgres":
        return exp.RegexpLike(this=arg, expression=_anchored(pattern))
    if dialect == "snowflake":
        return _fn("REGEXP_LIKE", arg, pattern)
    if dialect == "bigquery":
        return _fn("REGEXP_CONTAINS", arg, _anchored(pattern))
    return _fn("regexp_full_match", arg, pattern)


def byte_length(arg: exp.Expression, dialect: Dialect) -> exp.Expression:
    """Bytes of the UTF-8 encoding of ``arg``."""
    name = {"postgres": "octet_length", "snowflake": "OCTET_LENGTH", "bigquery": "BYTE_LENGTH"}
    return _fn(name.get(dialect, "strlen"), arg)


def fingerprint64(*args: exp.Expression | str) -> exp.Expression:
    """A 64-bit fingerprint of one or more values ``fingerprint64(x, ..., dialect)`` (DuckDB
    ``hash(x, ...)``: UBIGINT; PostgreSQL ``hashtextextended(x, 0)``: BIGINT; Snowflake
    ``HASH``; BigQuery ``FARM_FINGERPRINT``). Values differ between backends: only ever
    compared within one warehouse. DuckDB's is never NULL; PostgreSQL's of NULL is taken of
    ``''`` (both have no address, so the same keys); several values are fingerprinted as their
    texts joined by the unit separator (U+001F) on PostgreSQL and BigQuery."""
    *values, dialect = args
    if dialect == "postgres" or (dialect == "bigquery" and len(values) > 1):
        texts = [
            exp.Coalesce(
                this=exp.Cast(this=v, to=exp.DataType.build("TEXT")), expressions=[_literal("")]
            )
            for v in values
        ]
        text: exp.Expression = texts[0]
        for part in texts[1:]:
            text = exp.DPipe(
                this=exp.DPipe(this=text, expression=_literal("\x1f")), expression=part
            )
        if dialect == "bigquery":
            return _fn("FARM_FINGERPRINT", text)
        return _fn("hashtextextended", text, exp.Literal.number(0))
    name = {"snowflake": "HASH", "bigquery": "FARM_FINGERPRINT"}.get(dialect, "hash")
    return _fn(name, *values)


def normalize_email_call(name: str, arg: exp.Expression, dialect: Dialect) -> exp.Expression:
    """The Python reference normalization of a non-ASCII address: DuckDB's scalar function
    ``name``; on a server, the function ``activation.<name>`` (PostgreSQL: a SQL function
    reading ``activation.address_forms``, which :mod:`orchestrator.warehouse.address_forms`
    fills with the reference's results; Snowflake and BigQuery: to be deployed as a UDF when
    they are connected)."""
    if dialect == "duckdb":
        return _fn(name, arg)
    return exp.Dot(this=exp.to_identifier("activation"), expression=_fn(name, arg))


def regex_replace_all(node: exp.RegexpReplace, dialect: Dialect) -> exp.Expression:
    """``regexp_replace(x, p, r, 'g')``: every match replaced. Snowflake and BigQuery replace
    every match by default (and read a fourth argument differently): the flag is dropped."""
    modifiers = node.args.get("modifiers")
    if dialect in ("snowflake", "bigquery") and modifiers is not None:
        if str(modifiers.this) != "g":
            raise NonPortableSQL(f"regexp_replace flags {modifiers.this!r} ({dialect})")
        node = node.copy()
        node.set("modifiers", None)
    return node


def max_filtered(node: exp.ArrayMax, dialect: Dialect) -> exp.Expression:
    """``list_max(list_filter(xs, lambda v: cond))``: the largest element of the list ``xs``
    meeting ``cond`` (NULL when none). PostgreSQL and BigQuery: a subquery over
    ``unnest(xs)``; Snowflake: SQLGlot's ``ARRAY_MAX(FILTER(...))``."""
    inner = node.this
    if dialect not in ("postgres", "bigquery") or not isinstance(inner, exp.ArrayFilter):
        return node
    lam = inner.expression
    (var,) = lam.expressions
    cond = lam.this.copy()
    for ident in list(cond.find_all(exp.Identifier)):
        if ident.name == var.name and not isinstance(ident.parent, exp.Column):
            ident.replace(exp.column("_v"))
        elif ident.name == var.name and isinstance(ident.parent, exp.Column):
            ident.parent.replace(exp.column("_v"))
    alias = exp.TableAlias(this=exp.to_identifier("_u"), columns=[exp.to_identifier("_v")])
    sub = (
        exp.select(exp.Max(this=exp.column("_v")))
        .from_(exp.Unnest(expressions=[inner.this.copy()], alias=alias))
        .where(cond)
    )
    return exp.Subquery(this=sub)


def latest_by(
    node: exp.ArgMax, dialect: Dialect, where: exp.Expression | None = None
) -> exp.Expression:
    """``arg_max(v, (k1, k2...))`` (optionally ``FILTER (WHERE ...)``): ``v`` of the row with
    the largest key, compared element by element (NULL when no row). Elsewhere than DuckDB:
    the first element of ``array_agg(v ORDER BY k1 DESC, k2 DESC...)`` (NULL keys last)."""
    key = node.expression
    keys = key.expressions if isinstance(key, exp.Tuple) else [key]
    order = exp.Order(
        this=node.this.copy(),
        expressions=[exp.Ordered(this=k.copy(), desc=True, nulls_first=False) for k in keys],
    )
    agg: exp.Expression = exp.ArrayAgg(this=order)
    if where is not None:
        agg = exp.Filter(this=agg, expression=where.copy())
    return exp.Bracket(this=exp.Paren(this=agg), expressions=[exp.Literal.number(0)])


def days(node: exp.ToDays, dialect: Dialect) -> exp.Expression:
    """``to_days(n)``: an interval of ``n`` days (date arithmetic: ``ts - to_days(n)``).
    PostgreSQL: ``CAST(n AS INTEGER) * INTERVAL '1 day'``; elsewhere ``INTERVAL n DAY``."""
    if dialect == "postgres":
        return exp.Paren(
            this=exp.Mul(
                this=exp.Cast(this=node.this.copy(), to=exp.DataType.build("INT")),
                expression=exp.Interval(this=_literal("1"), unit=exp.var("DAY")),
            )
        )
    if dialect == "snowflake":  # no interval arithmetic: DATEADD at the subtraction
        if isinstance(node.parent, (exp.Sub, exp.Add)) and node.arg_key == "expression":
            return node
        raise NonPortableSQL("to_days(n) outside ts - to_days(n) has no snowflake form")
    return exp.Interval(this=node.this.copy(), unit=exp.var("DAY"))


def _is_seconds(node: exp.Expression) -> bool:
    return isinstance(node, exp.Anonymous) and str(node.this).lower() == "to_seconds"


def seconds(node: exp.Anonymous, dialect: Dialect) -> exp.Expression:
    """``to_seconds(n)``: an interval of ``n`` seconds (``ts + to_seconds(n)``). PostgreSQL:
    ``CAST(n AS BIGINT) * INTERVAL '1 second'``; BigQuery ``INTERVAL n SECOND``; Snowflake:
    ``DATEADD`` at the addition."""
    (arg,) = node.expressions
    if dialect == "postgres":
        return exp.Paren(
            this=exp.Mul(
                this=exp.Cast(this=arg.copy(), to=exp.DataType.build("BIGINT")),
                expression=exp.Interval(this=_literal("1"), unit=exp.var("SECOND")),
            )
        )
    if dialect == "snowflake":
        if isinstance(node.parent, (exp.Sub, exp.Add)) and node.arg_key == "expression":
            return node
        raise NonPortableSQL("to_seconds(n) outside ts + to_seconds(n) has no snowflake form")
    if dialect == "bigquery":
        return exp.Interval(this=arg.copy(), unit=exp.var("SECOND"))
    return node


def _dateadd(node: exp.Sub | exp.Add) -> exp.Expression:
    """Snowflake: ``ts - to_days(n)`` is ``DATEADD(DAY, -(n), ts)`` (``to_seconds``:
    ``SECOND``)."""
    unit = "SECOND" if _is_seconds(node.expression) else "DAY"
    inner = node.expression.expressions[0] if unit == "SECOND" else node.expression.this
    n: exp.Expression = exp.Paren(this=inner.copy())
    if isinstance(node, exp.Sub):
        n = exp.Neg(this=n)
    return _fn("DATEADD", exp.var(unit), n, node.this.copy())


#: The helpers by the DuckDB function name the shared SQL uses.
HELPERS: dict[str, Callable[..., exp.Expression]] = {
    "sha256": sha256_hex,
    "regexp_full_match": regex_full_match,
    "strlen": byte_length,
    "hash": fingerprint64,
}
NORMALIZE_FUNCTIONS = ("activation_normalize_email", "activation_normalize_email_google")

#: DuckDB functions and syntax another dialect would not run (or would run differently).
DUCKDB_ONLY: dict[str, str] = {
    "group by all": "GROUP BY ALL",
    "insert or replace": "INSERT OR REPLACE (write INSERT ... ON CONFLICT ... DO UPDATE)",
    "struct literal": "struct literals {'a': 1}",
    "list lambda": "list functions with lambdas (list_filter, list_transform)",
    "exclude": "SELECT * EXCLUDE (...)",
    "replace": "SELECT * REPLACE (...)",
    "arg_min": "arg_min (write arg_max of the opposite order)",
    "using sample": "USING SAMPLE",
}


def bulk_export_sql(query: str, dialect: Dialect) -> str:
    """A statement that streams the result of ``query`` (shared SQL) out of the warehouse in
    bulk: DuckDB reads it as Arrow record batches from the query itself; PostgreSQL runs
    ``COPY (<query>) TO STDOUT`` (read with psycopg's ``cursor.copy``). Snowflake and BigQuery
    export through their own unload jobs, not connected yet.

    Raises:
        NonPortableSQL: ``dialect`` has no bulk export here.
    """
    if dialect == "duckdb":
        return query
    if dialect == "postgres":
        (select,) = render(query, "postgres")
        return f"COPY ({select}) TO STDOUT"
    raise NonPortableSQL(f"bulk export is not connected for {dialect}")


# --- rendering -------------------------------------------------------------------------------


def _refuse(node: exp.Expression, dialect: Dialect) -> None:
    """Raise for DuckDB-only syntax (the lint test's rules)."""
    what: str | None = None
    if isinstance(node, exp.Group) and node.args.get("all"):
        what = DUCKDB_ONLY["group by all"]
    elif isinstance(node, exp.Insert) and (node.args.get("alternative") or "").upper() in (
        "REPLACE",
        "OR REPLACE",
    ):
        what = DUCKDB_ONLY["insert or replace"]
    elif isinstance(node, exp.Struct):
        what = DUCKDB_ONLY["struct literal"]
    elif isinstance(node, exp.Lambda) and not (
        isinstance(node.parent, exp.ArrayFilter) and isinstance(node.parent.parent, exp.ArrayMax)
    ):
        what = DUCKDB_ONLY["list lambda"]
    elif isinstance(node, exp.Star) and (node.args.get("except_") or node.args.get("except")):
        what = DUCKDB_ONLY["exclude"]
    elif isinstance(node, exp.Star) and node.args.get("replace"):
        what = DUCKDB_ONLY["replace"]
    elif isinstance(node, exp.ArgMin):
        what = DUCKDB_ONLY["arg_min"]
    elif isinstance(node, exp.TableSample):
        what = DUCKDB_ONLY["using sample"]
    if what:
        raise NonPortableSQL(f"{what} is DuckDB-only; the shared SQL cannot use it ({dialect})")


def duckdb_only_constructs(sql: str) -> list[str]:
    """The DuckDB-only constructs (:data:`DUCKDB_ONLY`) the shared SQL ``sql`` uses, each
    named once: empty when it is portable (the lint test's check).

    Raises:
        sqlglot.errors.ParseError: ``sql`` does not parse.
    """
    found: list[str] = []
    for tree in sqlglot.parse(sql, read="duckdb"):
        for node in tree.walk() if tree is not None else ():
            try:
                _refuse(node, "postgres")
            except NonPortableSQL as error:
                if str(error) not in found:
                    found.append(str(error))
    return found


def _helper(node: exp.Expression, dialect: Dialect) -> exp.Expression:
    """Replace one named helper call by ``dialect``'s spelling; other nodes unchanged."""
    if isinstance(node, exp.SHA2):
        return sha256_hex(node.this, dialect)
    if isinstance(node, exp.RegexpFullMatch):
        return regex_full_match(node.this, node.expression, dialect)
    if isinstance(node, exp.RegexpReplace):
        return regex_replace_all(node, dialect)
    if isinstance(node, exp.ArrayMax):
        return max_filtered(node, dialect)
    if isinstance(node, exp.ToDays):
        return days(node, dialect)
    if _is_seconds(node):
        return seconds(node, dialect)
    if (
        dialect == "snowflake"
        and isinstance(node, (exp.Sub, exp.Add))
        and (isinstance(node.expression, exp.ToDays) or _is_seconds(node.expression))
    ):
        return _dateadd(node)
    if isinstance(node, exp.Filter) and isinstance(node.this, exp.ArgMax):
        return latest_by(node.this, dialect, node.expression)
    if isinstance(node, exp.ArgMax) and not isinstance(node.parent, exp.Filter):
        return latest_by(node, dialect)
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        if name in NORMALIZE_FUNCTIONS:
            return normalize_email_call(name, node.expressions[0], dialect)
        if name in HELPERS:
            return HELPERS[name](*node.expressions, dialect)
    return node


def _types(node: exp.Expression, dialect: Dialect) -> exp.Expression:
    """UBIGINT (DuckDB fingerprints) becomes BIGINT where unsigned integers do not exist;
    a table in ``main`` (DuckDB's name for the default schema) is named unqualified, so the
    server finds it on its search path (PostgreSQL ``public``, the dataset or schema of the
    session elsewhere)."""
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.UBIGINT:
        return exp.DataType.build("BIGINT")
    if isinstance(node, exp.Table) and node.db == "main" and not node.catalog:
        node = node.copy()
        node.set("db", None)
    return node


def _alias_subqueries(tree: exp.Expression) -> None:
    """Name every unnamed subquery in a FROM or JOIN (PostgreSQL 15 refuses one without an
    alias; DuckDB and PostgreSQL 16 accept it)."""
    for index, node in enumerate(list(tree.find_all(exp.Subquery))):
        if not node.alias and isinstance(node.parent, (exp.From, exp.Join)):
            node.set("alias", exp.TableAlias(this=exp.to_identifier(f"_sub{index}")))


def _bottom_up(
    tree: exp.Expression, fn: Callable[[exp.Expression], exp.Expression]
) -> exp.Expression:
    """``tree`` (a copy) with ``fn`` applied to every node, children before their parent, so
    a helper nested in another helper's argument is rendered too."""
    tree = tree.copy()
    for node in reversed(list(tree.walk())):
        new = fn(node)
        if new is not node:
            if node is tree:
                return new
            node.replace(new)
    return tree


_MARK = "__activation_param_{}__"
_MARK_RE = re.compile(r"__activation_param_(\w+?)__")


def _name_positional(sql: str) -> str:
    """``sql`` with its k-th ``?`` (outside literals and comments) written ``$__pos_k``, so
    that every placeholder has a name and keeps the position it has in the shared text (a
    rendering may move clauses: a CTE, a QUALIFY rewritten as a subquery)."""
    out, last, k = [], 0, 0
    for token in Tokenizer().tokenize(sql):
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            out.append(sql[last : token.start] + f"$__pos_{k}")
            last, k = token.end + 1, k + 1
    return "".join(out) + sql[last:]


def _mark(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Placeholder):
        return exp.Var(this=_MARK.format(node.name))
    return node


def _number(text: str, names: list[str | int]) -> str:
    """Markers -> ``$1``, ``$2``... in order of first appearance in the rendered text; a name
    seen again reuses its number. ``names`` receives each number's name (an int: the index of
    a positional parameter)."""

    def number(match: re.Match) -> str:
        raw = match.group(1)
        name: str | int = int(raw[len("__pos_") :]) if raw.startswith("__pos_") else raw
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _MARK_RE.sub(number, text)


def _split_create_or_replace(tree: exp.Expression, dialect: Dialect) -> list[exp.Expression]:
    """``CREATE OR REPLACE TEMP TABLE`` (and views on PostgreSQL, which refuses to change a
    view's columns in place): a DROP then a CREATE."""
    if not (isinstance(tree, exp.Create) and tree.args.get("replace")):
        return [tree]
    kind = str(tree.args.get("kind") or "").upper()
    if dialect != "postgres" or kind not in ("TABLE", "VIEW"):
        return [tree]
    target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    drop = exp.Drop(tables=[target.copy()], kind=kind, exists=True)
    create = tree.copy()
    create.set("replace", False)
    return [drop, create]


@lru_cache(maxsize=4096)
def render_with_params(sql: str, dialect: Dialect) -> tuple[tuple[str, ...], tuple[str | int, ...]]:
    """:func:`render`, and what each PostgreSQL ``$n`` binds, in order: a name (DuckDB's
    ``$name``) or an int (the index of a ``?`` among the shared text's positional ones)."""
    if dialect == "duckdb":
        return (sql,), ()
    statements: list[str] = []
    names: list[str | int] = []
    shared = _name_positional(sql) if dialect == "postgres" else sql
    for tree in sqlglot.parse(shared, read="duckdb"):
        if tree is None:
            continue
        for node in tree.walk():
            _refuse(node, dialect)
        tree = _bottom_up(tree, lambda n: _types(_helper(n, dialect), dialect))
        if dialect == "postgres":
            _alias_subqueries(tree)
            tree = _bottom_up(tree, _mark)
        for part in _split_create_or_replace(tree, dialect):
            text = part.sql(dialect=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE)
            statements.append(_number(text, names) if dialect == "postgres" else text)
    return tuple(statements), tuple(names)


def render(sql: str, dialect: Dialect) -> tuple[str, ...]:
    """The statements of the shared SQL ``sql`` in ``dialect`` (one or more: a script, or a
    ``CREATE OR REPLACE`` PostgreSQL runs as DROP + CREATE). For PostgreSQL, placeholders
    (``?`` and DuckDB's ``$name``) become ``$1``, ``$2``... (psycopg's raw cursor).

    Raises:
        NonPortableSQL: DuckDB-only syntax, or a helper ``dialect`` has no form of.
        sqlglot.errors.ParseError: ``sql`` does not parse.
        sqlglot.errors.UnsupportedError: SQLGlot cannot express a construct in ``dialect``.
    """
    return render_with_params(sql, dialect)[0]


__all__ = [
    "DIALECTS",
    "DUCKDB_ONLY",
    "HELPERS",
    "RENDERED",
    "Dialect",
    "NonPortableSQL",
    "bulk_export_sql",
    "byte_length",
    "duckdb_only_constructs",
    "fingerprint64",
    "regex_full_match",
    "render",
    "render_with_params",
    "seconds",
    "sha256_hex",
]
