"""Warehouse tables: the source tables the product reads and the tables it writes.

Source tables in the product's own names (schema ``main``): the layout the benchmark's
generator and the tests' small warehouses build, mapped by
:data:`orchestrator.model.spec.DEFAULT_MODEL`. A company's warehouse (the demo's included:
:mod:`orchestrator.warehouse.demo`) keeps its own layout, mapped by its source model:

``customers``
    customer_id BIGINT primary key, email VARCHAR (raw, as the CRM holds it: may be messy or
    NULL), country VARCHAR (ISO 3166-1 alpha-2, NULL when unknown), country_name VARCHAR (as
    recorded), created_at TIMESTAMP (collection of the record), last_contact_at TIMESTAMP (last
    inbound action by the person: order, click, reply; NULL when none).
``events``
    event_id VARCHAR primary key, customer_id BIGINT, event_type VARCHAR (``purchase`` or
    ``refund``), occurred_at TIMESTAMP, invoice_no VARCHAR, stock_code VARCHAR, description
    VARCHAR, quantity INTEGER (negative for refunds), unit_price DOUBLE (GBP), value DOUBLE
    (quantity * unit_price, GBP).
``consents``
    Append-only log. consent_id VARCHAR primary key, customer_id BIGINT, purpose VARCHAR,
    status VARCHAR (``granted`` or ``withdrawn``), recorded_at TIMESTAMP, source VARCHAR (how:
    the form or channel), notice_version VARCHAR (the privacy notice shown).
``privacy_requests``
    request_id VARCHAR primary key, customer_id BIGINT (NULL when the request came by email
    only), subject_key VARCHAR (sha256 of the normalized email, NULL when made by customer id),
    request_type VARCHAR (``erasure``, GDPR Art. 17, or ``objection``, GDPR Art. 21),
    received_at TIMESTAMP.
``crm.loyalty``
    The loyalty programme's own table: customer_ref BIGINT (a customers id), loyalty_tier
    VARCHAR (``gold``, ``silver``, ``bronze``), lifetime_value DECIMAL(12,2) (GBP),
    preferred_store VARCHAR.
``web.events``
    The website's event stream, with its own names: event_uuid VARCHAR, visitor_customer_id
    BIGINT, action VARCHAR (``page_view``, ``add_to_cart``, ``checkout_started``), happened_at
    TIMESTAMP, sku VARCHAR, page_path VARCHAR.
``warehouse_build``
    key VARCHAR, value VARCHAR: how the demo warehouse was built (as-of date, time shift, seed).

Product tables (schema ``activation``) are created by :func:`create_activation_schema`.
"""

from __future__ import annotations

import duckdb

from orchestrator.model.spec import DEFAULT_MODEL
from orchestrator.model.views import create_intake_tables, refresh_source_views
from orchestrator.warehouse.product_schema import is_duckdb

SOURCE_DDL = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id     BIGINT PRIMARY KEY,
    email           VARCHAR,
    country         VARCHAR,
    country_name    VARCHAR,
    created_at      TIMESTAMP NOT NULL,
    last_contact_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS events (
    event_id    VARCHAR PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    event_type  VARCHAR NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    invoice_no  VARCHAR,
    stock_code  VARCHAR,
    description VARCHAR,
    quantity    INTEGER,
    unit_price  DOUBLE,
    value       DOUBLE
);
CREATE TABLE IF NOT EXISTS consents (
    consent_id     VARCHAR PRIMARY KEY,
    customer_id    BIGINT NOT NULL,
    purpose        VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,
    recorded_at    TIMESTAMP NOT NULL,
    source         VARCHAR,
    notice_version VARCHAR
);
CREATE TABLE IF NOT EXISTS privacy_requests (
    request_id   VARCHAR PRIMARY KEY,
    customer_id  BIGINT,
    subject_key  VARCHAR,
    request_type VARCHAR NOT NULL,
    received_at  TIMESTAMP NOT NULL
);
CREATE SCHEMA IF NOT EXISTS crm;
CREATE TABLE IF NOT EXISTS crm.loyalty (
    customer_ref    BIGINT PRIMARY KEY,
    loyalty_tier    VARCHAR NOT NULL,
    lifetime_value  DECIMAL(12, 2) NOT NULL,
    preferred_store VARCHAR
);
CREATE SCHEMA IF NOT EXISTS web;
CREATE TABLE IF NOT EXISTS web.events (
    event_uuid          VARCHAR PRIMARY KEY,
    visitor_customer_id BIGINT NOT NULL,
    action              VARCHAR NOT NULL,
    happened_at         TIMESTAMP NOT NULL,
    sku                 VARCHAR,
    page_path           VARCHAR
);
CREATE TABLE IF NOT EXISTS warehouse_build (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR
);
"""

ACTIVATION_DDL = """
CREATE SCHEMA IF NOT EXISTS activation;
CREATE TABLE IF NOT EXISTS activation.segment_members (
    segment     VARCHAR NOT NULL,
    customer_id BIGINT NOT NULL,
    computed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (segment, customer_id)
);
CREATE TABLE IF NOT EXISTS activation.audience_members (
    segment      VARCHAR NOT NULL,
    subject_key  VARCHAR NOT NULL,
    google_key   VARCHAR NOT NULL,
    customer_id  BIGINT NOT NULL,
    email        VARCHAR NOT NULL,
    legal_basis  VARCHAR NOT NULL,
    consent_ref  VARCHAR NOT NULL,
    computed_at  TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.audience_exclusions (
    segment     VARCHAR NOT NULL,
    customer_id BIGINT NOT NULL,
    reason      VARCHAR NOT NULL,
    computed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (segment, customer_id)
);
CREATE TABLE IF NOT EXISTS activation.customer_keys (
    customer_id       BIGINT NOT NULL,
    email_fingerprint UBIGINT NOT NULL,
    email             VARCHAR,
    subject_key       VARCHAR,
    google_key        VARCHAR,
    address_id        BIGINT
);
CREATE TABLE IF NOT EXISTS activation.customer_keys_rules (
    version     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.customer_key_history (
    customer_id    BIGINT NOT NULL,
    subject_key    VARCHAR NOT NULL,
    google_key     VARCHAR,
    superseded_at  TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.sync_state (
    segment         VARCHAR NOT NULL,
    destination     VARCHAR NOT NULL,
    subject_key     VARCHAR NOT NULL,
    destination_ref VARCHAR,
    fields_hash     VARCHAR NOT NULL,
    synced_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (segment, destination, subject_key)
);
CREATE TABLE IF NOT EXISTS activation.sync_rejections (
    segment     VARCHAR NOT NULL,
    destination VARCHAR NOT NULL,
    subject_key VARCHAR NOT NULL,
    fields_hash VARCHAR NOT NULL,
    operation   VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,
    permanent   BOOLEAN NOT NULL,
    rejected_at TIMESTAMP NOT NULL,
    remove_reason   VARCHAR,
    attempts        INTEGER NOT NULL DEFAULT 1,
    retry_at        TIMESTAMP,
    platform_status VARCHAR
);
CREATE TABLE IF NOT EXISTS activation.sync_retired_keys (
    segment     VARCHAR NOT NULL,
    destination VARCHAR NOT NULL,
    subject_key VARCHAR NOT NULL,
    identifiers VARCHAR NOT NULL,
    retired_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (segment, destination, subject_key, identifiers)
);
CREATE TABLE IF NOT EXISTS activation.sync_journal (
    segment     VARCHAR NOT NULL,
    destination VARCHAR NOT NULL,
    run         VARCHAR NOT NULL,
    seq         BIGINT NOT NULL,
    kind        VARCHAR NOT NULL,
    line        VARCHAR NOT NULL,
    written_at  TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.pair_locks (
    segment         VARCHAR NOT NULL,
    destination     VARCHAR NOT NULL,
    owner           VARCHAR NOT NULL,
    host            VARCHAR NOT NULL,
    pid             BIGINT NOT NULL,
    process_started VARCHAR,
    acquired_at     TIMESTAMP NOT NULL,
    heartbeat_at    TIMESTAMP NOT NULL,
    lease_s         DOUBLE NOT NULL,
    PRIMARY KEY (segment, destination)
);
CREATE TABLE IF NOT EXISTS activation.destination_request_journal (
    segment     VARCHAR NOT NULL,
    destination VARCHAR NOT NULL,
    run         VARCHAR NOT NULL,
    seq         BIGINT NOT NULL,
    pos         BIGINT NOT NULL,
    kind        VARCHAR NOT NULL,
    line        VARCHAR NOT NULL,
    written_at  TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.destination_requests (
    segment         VARCHAR NOT NULL,
    destination     VARCHAR NOT NULL,
    request_id      VARCHAR NOT NULL,
    audience_id     VARCHAR NOT NULL,
    op              VARCHAR NOT NULL,
    remove_reason   VARCHAR,
    subject_key     VARCHAR NOT NULL,
    send_key        VARCHAR NOT NULL,
    fields_hash     VARCHAR NOT NULL,
    destination_ref VARCHAR,
    fields_json     VARCHAR NOT NULL,
    submitted_at    TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.customer_phone_keys (
    customer_id BIGINT PRIMARY KEY,
    fingerprint UBIGINT NOT NULL,
    google_hash VARCHAR,
    meta_hash   VARCHAR
);
CREATE TABLE IF NOT EXISTS activation.departures (
    segment     VARCHAR NOT NULL,
    destination VARCHAR NOT NULL,
    subject_key VARCHAR NOT NULL,
    left_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (segment, destination, subject_key)
);
CREATE TABLE IF NOT EXISTS activation.destination_suppressions (
    destination     VARCHAR NOT NULL,
    subject_key     VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    suppressed_at   TIMESTAMP NOT NULL,
    destination_ref VARCHAR,
    PRIMARY KEY (destination, subject_key)
);
CREATE TABLE IF NOT EXISTS activation.suppression_list (
    subject_key   VARCHAR NOT NULL PRIMARY KEY,
    google_key    VARCHAR,
    request_type  VARCHAR NOT NULL,
    suppressed_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.erasure_receipts (
    request_id  VARCHAR NOT NULL,
    segment     VARCHAR NOT NULL,
    destination VARCHAR NOT NULL,
    audience_id VARCHAR NOT NULL,
    action      VARCHAR NOT NULL,
    outcome     VARCHAR NOT NULL,
    detail      VARCHAR NOT NULL,
    sent_at     TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS activation.request_processing (
    request_id   VARCHAR NOT NULL PRIMARY KEY,
    subjects     INTEGER NOT NULL,
    purged_rows  INTEGER NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    matched      BOOLEAN
);
"""

#: Source table name -> column names, in table order. The segment compiler's catalog of what a
#: segment may refer to is built on top of this; lineage metadata uses it too.
SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "customer_id",
        "email",
        "country",
        "country_name",
        "created_at",
        "last_contact_at",
    ),
    "events": (
        "event_id",
        "customer_id",
        "event_type",
        "occurred_at",
        "invoice_no",
        "stock_code",
        "description",
        "quantity",
        "unit_price",
        "value",
    ),
    "consents": (
        "consent_id",
        "customer_id",
        "purpose",
        "status",
        "recorded_at",
        "source",
        "notice_version",
    ),
    "privacy_requests": ("request_id", "customer_id", "subject_key", "request_type", "received_at"),
}


def create_source_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the empty source tables if they do not exist (idempotent), the product's intake
    tables, and the canonical views over them for :data:`orchestrator.model.spec.DEFAULT_MODEL`
    (the layout of these tables; a project with its own model refreshes the views from its
    declaration, :func:`orchestrator.model.views.refresh_source_views`)."""
    con.execute(SOURCE_DDL)
    refresh_source_views(con, DEFAULT_MODEL, ())


def create_activation_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the product's own tables in schema ``activation`` if they do not exist (idempotent).

    ``segment_members``: one row per (segment, customer_id) in the segment's last computation.
    ``audience_members``: one row per (segment, subject_key), kept so by the audience step
    rather than by a primary key (an index DuckDB holds in memory, see
    ``orchestrator.audience``; an older warehouse's is dropped by
    :func:`drop_audience_primary_key`): the consent-filtered, pseudonymized members; ``email``
    is the base-normalized address, kept in the warehouse for email destinations only;
    ``consent_ref`` is the consent_id (or ``purchase:<event_id>`` for soft opt-in) that allowed
    the member.
    ``audience_exclusions``: one row per (segment, customer_id) left out, with the reason.
    ``customer_keys``: one row per customer: base-normalized email and keys, with the
    fingerprint of the raw address they came from, and ``address_id``, the lowest cached
    customer_id holding the same subject key (``orchestrator.customer_keys``).
    ``customer_keys_rules``: one row, the version of the normalization rules the cached keys
    were computed with (``orchestrator.customer_keys.KEY_RULES_VERSION``).
    ``customer_key_history``: keys a customer had before their address changed (or their row
    went), kept while a destination still holds the key, so the person's requests and
    withdrawals reach every address we ever sent for them.
    ``sync_state``: what each destination acknowledged; ``destination_ref`` is the platform's own
    member id when it differs from subject_key (Mailchimp: md5 of the lowercase email).
    ``sync_rejections``: rows a destination refused or did not confirm, with the platform's
    words (``reason``), ``permanent`` (refused for good), the remove's ``remove_reason``,
    ``attempts`` (refusals in a row of the same operation), ``retry_at`` (a refused remove is
    not sent again before it, unless its reason changes: ``orchestrator.sync.rejections``) and
    ``platform_status`` (the status the platform reports the contact in, e.g. ``unsubscribed``
    or ``cleaned`` for a contact it keeps).
    ``sync_retired_keys``: identifier sets an ad platform may still hold for a subject besides
    the one in ``sync_state`` (an old set whose re-key remove was sent and not acknowledged:
    refused, or its answer lost); ``identifiers`` is the send key as it was added. Removed
    each run until acknowledged (``orchestrator.sync.state``).
    ``sync_journal``: what a sync is about to send and what destinations answered, one row
    per journal line, until folded into ``sync_state`` (``orchestrator.sync.journal``).
    ``pair_locks``: one row per (segment, destination) being synced, with its holder and lease
    (``orchestrator.sync.pair_lock``).
    ``customer_phone_keys``: each customer's phone hashes (Google with ``+``, Meta without), NULL
    for an invalid phone, re-hashed when the phone or country changes
    (``orchestrator.phone_keys``).
    ``destination_requests``: one row per member of a request a destination accepted for
    asynchronous processing and had not finished when the sync stopped waiting (Google Data
    Manager API); the member is ``pending`` in ``sync_state`` until a later run reads the
    request's status (``orchestrator.sync.async_requests``). Hashes only (``send_key`` is
    what was sent to an ad platform, ``fields_json`` its consent signals).
    ``destination_request_journal``: the journal of those requests, one row per line, until
    folded into ``destination_requests`` with the sync journal (same transactions).
    ``departures``: members a destination still holds after they left the audience, with the
    time they were first seen gone (``left_at``); the retention clock of modes other than mirror.
    ``destination_suppressions``: subjects a destination holds as unsubscribed, cleaned or
    forgotten; never subscribed again. ``destination_ref``: the platform's member id (the
    reconciliation check reads the member's status there).
    ``suppression_list``: one row per data subject who objected (GDPR Art. 21(3)) or asked for
    erasure (Art. 17): hashes and a date only, never an address. ``google_key`` (NULL when
    unknown) catches Gmail variants of the same mailbox; ``request_type`` is ``erasure`` or
    ``objection`` (an erasure supersedes an objection). A suppressed subject never re-enters
    an audience (``orchestrator.audience``).
    ``erasure_receipts``: one row per attempt to remove a requester from a (segment,
    destination): ``action`` sent (``remove``, ``unsubscribe``, ``delete_permanent``,
    ``archive``), ``outcome`` (``ok``, ``refused``, ``error``), ``detail`` (counts and the
    platform's words, no address), ``sent_at`` (UTC). The latest row per (request, segment,
    destination) counts.
    ``request_processing``: one row per privacy request handled: subjects found (``subjects``),
    rows purged from the product's own tables (``purged_rows``), ``processed_at`` (UTC),
    ``matched`` (false: no customer had the address and no destination held it; NULL in rows
    written before the column existed). Older warehouses get the column added.
    """
    con.execute(ACTIVATION_DDL)
    for column, sql_type in _REJECTION_COLUMNS_ADDED:
        con.execute(
            f"ALTER TABLE activation.sync_rejections ADD COLUMN IF NOT EXISTS {column} {sql_type}"
        )
    con.execute(
        "ALTER TABLE activation.destination_suppressions "
        "ADD COLUMN IF NOT EXISTS destination_ref VARCHAR"
    )
    create_intake_tables(con)
    con.execute(
        "ALTER TABLE activation.request_processing ADD COLUMN IF NOT EXISTS matched BOOLEAN"
    )


#: Columns older warehouses' ``sync_rejections`` lack (added in place, existing rows kept).
_REJECTION_COLUMNS_ADDED = (
    ("remove_reason", "VARCHAR"),
    ("attempts", "INTEGER DEFAULT 1"),
    ("retry_at", "TIMESTAMP"),
    ("platform_status", "VARCHAR"),
)


#: ``audience_members`` as :data:`ACTIVATION_DDL` declares it, under a temporary name.
_AUDIENCE_REBUILT = "audience_members_rebuilt"


def drop_audience_primary_key(con: duckdb.DuckDBPyConnection) -> bool:
    """Rebuild ``activation.audience_members`` without the primary key warehouses created
    before 2026-12-02 have; return True when it did.

    DuckDB keeps an index's keys in memory and cannot spill them: at 2M customers that index
    made the audience step outgrow its memory limit (``orchestrator.audience``, which keeps
    one row per subject key itself). The rows are copied into a table declared as today's
    schema (``NOT NULL`` columns, no key), the old table dropped and the new one renamed, in
    the caller's transaction: open one, so that it is all or nothing (the audience step, the
    table's only writer, runs it in its own). A copy of every row, once per warehouse; nothing
    when there is no key. A warehouse on a server never had the key (nothing to do).
    """
    if not is_duckdb(con):
        return False
    [(keyed,)] = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE schema_name = 'activation' "
        "AND table_name = 'audience_members' AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()  # fetchall, not fetchone: it leaves no open result behind (con.register)
    if not keyed:
        return False
    start = ACTIVATION_DDL.index("CREATE TABLE IF NOT EXISTS activation.audience_members")
    ddl = ACTIVATION_DDL[start : ACTIVATION_DDL.index(");", start) + 2]
    statements = [
        f"DROP TABLE IF EXISTS activation.{_AUDIENCE_REBUILT}",
        ddl.replace("activation.audience_members", f"activation.{_AUDIENCE_REBUILT}"),
        f"INSERT INTO activation.{_AUDIENCE_REBUILT} BY NAME "
        "SELECT * FROM activation.audience_members",
        "DROP TABLE activation.audience_members",
        f"ALTER TABLE activation.{_AUDIENCE_REBUILT} RENAME TO audience_members",
    ]
    for statement in statements:
        con.execute(statement)
    return True
