"""The local PostgreSQL server of ``make demo WAREHOUSE=postgres`` (``make pg-start`` /
``make pg-stop``): started from Debian's binaries into a folder, a generated password kept
0600 and never printed, idempotent start, data kept across a stop, a clear error when the
folder's server already runs on another port."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orchestrator.warehouse.local_postgres import LocalPostgres, LocalPostgresError
from tests.servers import free_port

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder the ``postgres`` user can reach (pytest's own are private to root); the
    server is stopped and the folder removed after the test."""
    root = Path(tempfile.mkdtemp(prefix="activation-localpg-"))
    root.chmod(0o755)
    try:
        yield root / "postgres"
    finally:
        LocalPostgres(root / "postgres").stop()
        shutil.rmtree(root, ignore_errors=True)


def _cli(action: str, folder: Path, port: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrator.warehouse.local_postgres", action]
    return subprocess.run(
        [*command, "--folder", str(folder), "--port", str(port)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def _connect(server: LocalPostgres) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=server.port, user="activation", password=server.password(),
        dbname="activation", autocommit=True, connect_timeout=10,
    )  # fmt: skip


def test_start_stop_keeps_the_data_and_never_prints_the_password(folder: Path) -> None:
    port = free_port()
    started = _cli("start", folder, port)
    assert started.returncode == 0, started.stderr
    server = LocalPostgres(folder, port)
    password = server.password()
    assert len(password) >= 24
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    assert "started" in started.stdout
    with _connect(server) as con:
        con.execute("CREATE TABLE kept (n int)")
        con.execute("INSERT INTO kept VALUES (42)")

    again = _cli("start", folder, port)
    assert again.returncode == 0 and "already running" in again.stdout
    status = _cli("status", folder, port)
    assert status.returncode == 0 and "running" in status.stdout

    stopped = _cli("stop", folder, port)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert _cli("status", folder, port).returncode == 3
    with pytest.raises(psycopg.OperationalError):
        _connect(server).close()

    assert _cli("start", folder, port).returncode == 0
    assert server.password() == password, "the cluster keeps its password"
    with _connect(server) as con:
        assert con.execute("SELECT n FROM kept").fetchall() == [(42,)]
    for result in (started, again, status, stopped):
        assert password not in result.stdout + result.stderr


def test_no_password_in_the_server_log(folder: Path) -> None:
    server = LocalPostgres(folder, free_port())
    server.start()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host="127.0.0.1", port=server.port, user="activation", password="wrong",
            dbname="activation", connect_timeout=10,
        )  # fmt: skip
    log = subprocess.run(["cat", str(server.log_file)], capture_output=True, text=True).stdout
    assert "password authentication failed" in log
    assert server.password() not in log


def test_the_same_folder_on_another_port_is_refused_with_the_port_in_use(folder: Path) -> None:
    first = LocalPostgres(folder, free_port())
    first.start()
    other = LocalPostgres(folder, free_port())
    with pytest.raises(LocalPostgresError, match=f"already runs on port {first.port}"):
        other.start()


def test_a_taken_port_names_the_log_and_pg_port(folder: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = LocalPostgres(folder, busy.getsockname()[1])
        with pytest.raises(LocalPostgresError, match="PG_PORT") as caught:
            server.start()
    assert str(server.log_file) in str(caught.value)
