"""``activation mock-destinations``, ``forget``/``object`` input checks, help and exit codes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from click.testing import CliRunner

from orchestrator.cli import cli
from tests.conftest import REPO

from .conftest import activation_command, run_activation

LAZY_PRIVACY_MODULES = ("explain", "register", "receipts", "requests")
COMMANDS = (
    "validate",
    "preview",
    "explain",
    "register",
    "receipt",
    "forget",
    "object",
    "mock-destinations",
)


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


def test_unknown_command_is_a_usage_error() -> None:
    done = run_activation("frobnicate")
    assert done.returncode == 2 and "No such command" in done.stderr


def test_forget_and_object_refuse_a_bad_email_without_echoing_it(
    runner: CliRunner, project_env: dict[str, str]
) -> None:
    for command in ("forget", "object"):
        result = runner.invoke(cli, [command, "not-an-address@@example.com"])
        assert result.exit_code == 1
        assert "not a valid email address" in result.stderr
        assert "not-an-address" not in result.output
        assert "Traceback" not in result.output


def test_mock_destinations_serves_in_the_foreground_until_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "mock"
    proc = subprocess.Popen(
        [*activation_command(), "mock-destinations", "--port", "0", "--state-dir", str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=os.environ.copy(),
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line + proc.stderr.read()
        port = int(match.group(1))
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
        assert any(state.iterdir())  # its SQLite state lives where we said
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_cli_import_is_light() -> None:
    """The command starts fast: importing it loads neither Dagster nor the privacy commands'
    modules (they are imported by the command that needs them)."""
    lazy = ("dagster", *(f"orchestrator.privacy.{m}" for m in LAZY_PRIVACY_MODULES))
    code = f"import sys, orchestrator.cli; print(sorted(set({lazy!r}) & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "[]"
    start = time.monotonic()
    assert run_activation("--help").returncode == 0
    assert time.monotonic() - start < 10
