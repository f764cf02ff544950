"""Build the REES46 project's warehouse: the real clickstream sample as the marketplace holds
it (``clickstream.rees46_events``), and its member app's tables with synthetic people
(``app.members``, ``app.marketing_permissions``; fixed seed, ``example.org`` addresses)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

HERE = Path(__file__).resolve().parent
EVENTS_CSV = HERE / "events.csv"
#: The sample covers 2019-10-01 00:00 to 02:28 UTC; segments are evaluated just after.
AS_OF = datetime(2019, 10, 1, 3, 0, 0)
SEED = 46


def build(path: Path) -> None:
    """Write the warehouse at ``path`` (a new DuckDB file)."""
    rng = random.Random(SEED)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA clickstream; CREATE SCHEMA app")
        con.execute(
            "CREATE TABLE clickstream.rees46_events AS SELECT * FROM read_csv(?, header = true)",
            [str(EVENTS_CSV)],
        )
        users = [
            uid
            for (uid,) in con.execute(
                "SELECT DISTINCT user_id FROM clickstream.rees46_events ORDER BY 1"
            ).fetchall()
        ]
        con.execute(
            """
            CREATE TABLE app.members (
                user_id BIGINT PRIMARY KEY, contact_email VARCHAR, membership VARCHAR,
                lifetime_spend DECIMAL(10, 2), newsletter_opt BOOLEAN,
                member_since TIMESTAMP, last_login_at TIMESTAMP, profile_synced_at TIMESTAMP
            )
            """
        )
        _insert(con, "app.members", [_member(rng, uid) for uid in users])
        con.execute(
            """
            CREATE TABLE app.marketing_permissions (
                permission_id VARCHAR, user_id BIGINT, channel VARCHAR, answer VARCHAR,
                answered_at TIMESTAMP, form VARCHAR, notice VARCHAR
            )
            """
        )
        _insert(
            con,
            "app.marketing_permissions",
            [row for uid in users for row in _permissions(rng, uid)],
        )


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Insert rows through one Arrow table (DuckDB's executemany is one statement per row)."""
    names = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
    arrow = pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows])
    con.register("incoming", arrow)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
    con.unregister("incoming")


def _member(rng: random.Random, uid: int) -> tuple:
    since = datetime(2016, 1, 1) + timedelta(days=rng.randrange(0, 1360))
    email = f"u{uid}@example.org"
    roll = rng.random()
    if roll < 0.03:
        email = None
    elif roll < 0.06:
        email = f"  U{uid}@Example.ORG "  # messy, same person
    elif roll < 0.08:
        email = "shared.family@example.org"  # two members, one address
    login = since + timedelta(days=rng.randrange(0, 400)) if rng.random() < 0.7 else None
    login = min(login, AS_OF - timedelta(days=1)) if login else None
    return (
        uid,
        email,
        rng.choice(["plus", "basic", "basic"]),
        round(rng.choice([0, 0, 50, 120, 480, 650, 2400]) * rng.random(), 2),
        rng.random() < 0.5,
        since,
        login,
        datetime(2019, 9, 30, 23, 0),  # the nightly profile import: never an own action
    )


def _permissions(rng: random.Random, uid: int) -> list[tuple]:
    rows = []
    for channel in ("EMAIL", "PAID_SOCIAL"):
        if rng.random() < 0.2:
            continue
        at = datetime(2018, 1, 1) + timedelta(days=rng.randrange(0, 630))
        form = rng.choice(["signup_form", "signup_form", "app_settings", "partner_sweepstake"])
        rows.append((f"p{uid}-{channel}-1", uid, channel, "YES", at, form, "2018-05"))
        roll = rng.random()
        if roll < 0.15:
            later = at + timedelta(days=rng.randrange(1, 60))
            rows.append(
                (f"p{uid}-{channel}-2", uid, channel, "NO", later, "app_settings", "2018-05")
            )
        elif roll < 0.22:
            later = at + timedelta(days=rng.randrange(1, 60))
            rows.append((f"p{uid}-{channel}-2", uid, channel, "LATER", later, "app_settings", None))
    return rows
