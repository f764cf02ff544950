"""Real servers for tests, started from Debian's packages in temporary folders on free ports.

:func:`running_postgres` (PostgreSQL: ``initdb`` + ``pg_ctl``; as root, through ``runuser`` to
the ``postgres`` user, since ``initdb`` refuses root) and :func:`running_redis`
(``redis-server``). Each stops its server and removes its folder on exit. A missing server
binary fails the test with what to install (``make test`` installs both when run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server: ``host``, ``port``, superuser ``user`` and ``password``,
    and a database ``dbname`` created for the test."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def url(self, scheme: str = "postgresql+psycopg2", dbname: str | None = None) -> str:
        """A SQLAlchemy URL (``postgresql+psycopg2://`` by default)."""
        db = dbname or self.dbname
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{db}"


def postgres_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl`` (``PG_BIN``, else the newest under
    ``/usr/lib/postgresql/*/bin``); fails the test when there is none."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql; make test does it)")
    return Path(found[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """``cmd`` run as the ``postgres`` user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def running_postgres(dbname: str = "activation") -> Iterator[PostgresServer]:
    """Start PostgreSQL in a fresh temporary folder on a free port; yield it; stop it.

    The folder is made under the system temporary directory (readable by the ``postgres``
    user, unlike pytest's private folders). Authentication: password (``md5``) on 127.0.0.1.
    """
    binary = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="activation-pg-"))
    data, password = root / "data", "test-password"
    (root / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "pwfile", "postgres", "postgres")
    port = free_port()
    user = "activation"
    try:
        subprocess.run(
            _as_postgres(
                [str(binary / "initdb"), "-D", str(data), "-U", user, "-A", "md5",
                 "--pwfile", str(root / "pwfile"), "-E", "UTF8", "--locale", "C.UTF-8"]
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [str(binary / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                 str(root / "server.log"), "-w", "-t", "60", "start"]
            ),
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        server = PostgresServer("127.0.0.1", port, user, password, dbname)
        _create_database(server)
        yield server
    finally:
        subprocess.run(
            _as_postgres([str(binary / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _create_database(server: PostgresServer) -> None:
    import psycopg2

    con = psycopg2.connect(
        host=server.host, port=server.port, user=server.user, password=server.password,
        dbname="postgres",
    )  # fmt: skip
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{server.dbname}"')
    finally:
        con.close()


@dataclass(frozen=True)
class RedisServer:
    """A running Redis server on 127.0.0.1:``port``."""

    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


@contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    """Start ``redis-server`` (no persistence) in ``folder`` on a free port; yield it; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed (apt-get install redis-server; make test does it)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(folder), "--daemonize", "no"]  # fmt: skip
    with open(folder / "redis.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, "redis-server")
        yield RedisServer(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
