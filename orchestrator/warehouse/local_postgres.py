"""A local PostgreSQL server for the demo and the bench, in a folder of the project: Debian's
``initdb`` and ``pg_ctl`` (``postgresql-15``), started on ``127.0.0.1`` only.

``python -m orchestrator.warehouse.local_postgres start|stop|status --folder DIR --port N``
(``make pg-start`` / ``make pg-stop``). What lives in ``DIR`` (default ``.data/postgres``):

``password``   the superuser's password, generated once (``secrets.token_urlsafe``), mode 0600,
               never printed; the product reads it from the environment variable
               :data:`PASSWORD_ENV`, which the demo and the Makefile set from this file.
``server/``    the cluster (``server/data``) and its log (``server/server.log``); owned by the
               ``postgres`` user when we are root, since ``initdb`` refuses to run as root.

The server listens on ``127.0.0.1:<port>`` only (no Unix socket), with password
authentication (``scram-sha-256``), user ``activation``, database ``activation``. It keeps
running until ``stop``; its data survives a stop and a restart.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click

#: The environment variable the demo's and the bench's ``warehouse:`` read the password from.
PASSWORD_ENV = "ACTIVATION_DEMO_PG_PASSWORD"
#: The port ``make demo WAREHOUSE=postgres`` uses unless ``PG_PORT`` says otherwise.
DEFAULT_PORT = 55432
USER = "activation"
DATABASE = "activation"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server started for one run)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgresError(RuntimeError):
    """The local server could not be installed, initialized, started or stopped; the message
    says what to check (never the password)."""


def postgres_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: ``PG_BIN``, else the newest
    ``/usr/lib/postgresql/<version>/bin``.

    Raises:
        LocalPostgresError: PostgreSQL is not installed.
    """
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise LocalPostgresError(
            "PostgreSQL is not installed: apt-get install postgresql (make does it when run "
            "as root), or set PG_BIN to the folder of initdb and pg_ctl"
        )
    return Path(found[-1]).parent


@dataclass(frozen=True)
class LocalPostgres:
    """The server kept in ``folder`` (see the module docstring), listening on ``port``."""

    folder: Path
    port: int = DEFAULT_PORT

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    @property
    def server_dir(self) -> Path:
        return self.folder / "server"

    @property
    def data_dir(self) -> Path:
        return self.server_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.server_dir / "server.log"

    def url(self, dbname: str = DATABASE) -> str:
        """``postgresql://activation@127.0.0.1:<port>/<dbname>`` (no password: it comes from
        :data:`PASSWORD_ENV`)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def password(self) -> str:
        """The generated password (from :attr:`password_file`).

        Raises:
            LocalPostgresError: the server was never initialized here.
        """
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise LocalPostgresError(
                f"no local PostgreSQL in {self.folder}: start it first (make pg-start)"
            ) from None

    def is_running(self) -> bool:
        """True when ``pg_ctl status`` finds the server of :attr:`data_dir` running."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        status = _run_as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(self.data_dir),
                                   "status"], check=False)  # fmt: skip
        return status.returncode == 0

    def running_port(self) -> int | None:
        """The port the server of :attr:`data_dir` listens on, None when it is not running
        (read from ``postmaster.pid``, whose fourth line is the port)."""
        if not self.is_running():
            return None
        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def start(self) -> bool:
        """Initialize the cluster when missing, start the server unless it runs, create the
        database when missing. Returns True when this call started the server.

        Raises:
            LocalPostgresError: initdb or pg_ctl failed (the log file is named), or the port
                is taken by another program.
        """
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        started = False
        running = self.running_port()
        if running is not None and running != self.port:
            raise LocalPostgresError(
                f"the PostgreSQL server of {self.data_dir} already runs on port {running}: "
                f"use PG_PORT={running}, or stop it first (make pg-stop PG_PORT={running})"
            )
        if running is None:
            options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            result = _run_as_postgres(
                [str(postgres_bin() / "pg_ctl"), "-D", str(self.data_dir), "-o", options,
                 "-l", str(self.log_file), "-w", "-t", "60", "start"],
                check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise LocalPostgresError(
                    f"PostgreSQL did not start on 127.0.0.1:{self.port} (port taken? choose "
                    f"another with PG_PORT); see {self.log_file}"
                )
            started = True
        self._create_database()
        return started

    def stop(self) -> bool:
        """Stop the server (``pg_ctl stop -m fast``); returns False when it was not running.

        Raises:
            LocalPostgresError: pg_ctl could not stop it.
        """
        if not self.is_running():
            return False
        result = _run_as_postgres(
            [str(postgres_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
             "-t", "60", "stop"],
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise LocalPostgresError(f"PostgreSQL did not stop; see {self.log_file}")
        return True

    def _initdb(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.server_dir.exists():  # a half-made cluster from an interrupted first start
            shutil.rmtree(self.server_dir)
        self.server_dir.mkdir(mode=0o700)
        _write_secret(self.password_file, secrets.token_urlsafe(24))
        pwfile = self.server_dir / "initdb.pw"  # readable by initdb's user, removed at once
        _write_secret(pwfile, self.password())
        if os.geteuid() == 0:
            shutil.chown(self.server_dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            result = _run_as_postgres(
                [str(postgres_bin() / "initdb"), "-D", str(self.data_dir), "-U", USER,
                 "-A", "scram-sha-256", "--pwfile", str(pwfile), "-E", "UTF8",
                 "--locale", "C.UTF-8"],
                check=False,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise LocalPostgresError(f"initdb failed in {self.data_dir}: {result.stderr[-500:]}")

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password(),
            dbname="postgres", autocommit=True, connect_timeout=10,
        ) as con:  # fmt: skip
            found = con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
            if found.fetchone() is None:
                con.execute(f'CREATE DATABASE "{DATABASE}"')


def _write_secret(path: Path, value: str) -> None:
    """Write ``value`` to a new file at ``path`` readable by its owner only (0600)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")


def _run_as_postgres(cmd: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
    """``cmd``, as the ``postgres`` user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=180)


@click.command()
@click.argument("action", type=click.Choice(["start", "stop", "status"]))
@click.option("--folder", type=click.Path(path_type=Path), default=Path(".data/postgres"))
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
def main(action: str, folder: Path, port: int) -> None:
    """Start, stop or report the local PostgreSQL server kept in FOLDER."""
    server = LocalPostgres(folder.resolve(), port)
    try:
        if action == "start":
            started = server.start()
            verb = "started" if started else "already running"
            click.echo(f"PostgreSQL {verb} on {server.url()} (password in {server.password_file})")
        elif action == "stop":
            click.echo("PostgreSQL stopped" if server.stop() else "PostgreSQL was not running")
        else:
            running = server.is_running()
            click.echo(f"PostgreSQL {'running' if running else 'stopped'} ({server.data_dir})")
            raise SystemExit(0 if running else 3)
    except LocalPostgresError as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    main()
