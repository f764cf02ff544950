"""Fixtures for the ``activation`` command: a runner, a broken segments folder, a subprocess
helper running the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import REPO

AS_OF_TEXT = "2026-11-29T06:00:00"

BROKEN_SEGMENT = """\
name: broken_one
description: retention_days is negative and the purpose is not declared
owner: crm-team@example.com
purpose: email_marketing
legal_basis: consent
retention_days: -3
schedule: "0 6 * * *"
audience:
  trait: country
  in: [FR]
destinations:
  - destination: mailchimp
    audience_id: "zz1"
    mode: mirror
"""


@pytest.fixture
def runner() -> CliRunner:
    """Click's runner (stdout and stderr kept apart)."""
    return CliRunner()


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    """A segments folder with one valid example and one file with a bad field."""
    folder = tmp_path / "segments"
    folder.mkdir()
    example = REPO / "segments" / "recent_buyers_eu.yaml"
    (folder / "recent_buyers_eu.yaml").write_text(example.read_text(encoding="utf-8"))
    (folder / "broken_one.yaml").write_text(BROKEN_SEGMENT)
    return folder


def activation_command() -> list[str]:
    """The installed console script when present, else ``python -m orchestrator.cli``."""
    script = Path(sys.executable).with_name("activation")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator.cli"]


def run_activation(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``activation ARGS`` in a subprocess from the repository root."""
    return subprocess.run(
        [*activation_command(), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
