"""The commands on a PostgreSQL warehouse that cannot be used: an unreachable server, a wrong or
missing password. Each is one line on standard error naming the warehouse
(``postgres://user@host:port/db``) and what to check; never the password, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.conftest import postgres_project, run_activation
from tests.postgres import PASSWORD_ENV

EMAIL = "Jane.Roe.Cli@Example.com"  # synthetic
SECRET = "Wr0ng-Pa55word-Sentinel"  # pragma: allowlist secret
#: Every command that opens the warehouse, with its arguments.
COMMANDS = [
    ("forget", EMAIL),
    ("object", EMAIL),
    ("withdraw", EMAIL, "--purpose", "email_marketing"),
    ("receipt", "pr-000000000000"),
    ("explain", EMAIL, "recent_buyers_eu"),
    ("explain", EMAIL),
    ("members", "recent_buyers_eu"),
    ("catalog", "--check"),
    ("preview", "recent_buyers_eu"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_one_line(done, warehouse: str, *fragments: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ") and warehouse in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert SECRET not in done.stdout + done.stderr
    assert EMAIL.lower() not in (done.stdout + done.stderr).lower()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[:2]).replace("@", "_"))
def test_an_unreachable_server_is_one_line_naming_the_warehouse(
    command: tuple[str, ...], project_env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()  # nothing listens there
    url = f"postgresql://activation@127.0.0.1:{port}/warehouse"
    config = postgres_project(tmp_path / "project", url)
    env = {"ACTIVATION_CONFIG": str(config), PASSWORD_ENV: SECRET}
    done = run_activation(*command, env=env)
    _assert_one_line(
        done, f"postgres://activation@127.0.0.1:{port}/warehouse", "no server answered"
    )


def test_a_wrong_or_missing_password_is_one_line_without_the_password(
    project_env: dict[str, str], postgres_url: str, tmp_path: Path
) -> None:
    config = postgres_project(tmp_path / "project", postgres_url)
    where = postgres_url.replace("postgresql://", "postgres://")
    for command in (
        ("forget", EMAIL),
        ("receipt", "pr-000000000000"),
        ("members", "recent_buyers_eu"),
    ):
        wrong = run_activation(
            *command, env={"ACTIVATION_CONFIG": str(config), PASSWORD_ENV: SECRET}
        )
        _assert_one_line(wrong, where, "wrong or missing password", PASSWORD_ENV)
    missing = run_activation(
        "forget", EMAIL, env={"ACTIVATION_CONFIG": str(config), PASSWORD_ENV: ""}
    )
    _assert_one_line(missing, where, f"{PASSWORD_ENV} is not set")
