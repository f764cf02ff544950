"""Start the mock destinations as a subprocess for tests and the demo.

    with running_mock(tmp_path / "mock") as mock:
        client = MetaClient(base_url=mock.meta_url, token=mock.meta_token)
        ...
        assert mock.meta_members("120210000000000") == sorted(expected_hashes)

The server runs in its own session (process group) and is stopped with SIGTERM, then SIGKILL
after 5 seconds, so a failing test never leaves it behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from destinations.mock.server import (
    DEFAULT_GOOGLE_TOKEN,
    DEFAULT_MAILCHIMP_TOKEN,
    DEFAULT_META_TOKEN,
)

PLATFORMS = ("meta", "mailchimp", "google")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
#: The folder holding the ``destinations`` package (a checkout or site-packages): the mock's
#: process imports it from there.
_PACKAGES_DIR = Path(__file__).resolve().parents[2]


class MockStartError(RuntimeError):
    """The mock server did not become ready; the message includes its stderr."""


@dataclass
class MockHandle:
    """A running mock: URLs, tokens and control helpers (``requests``, raise on HTTP errors).

    ``meta_url`` = ``<base>/meta`` (clients append ``/{version}/{audience_id}/users``);
    ``mailchimp_url`` = ``<base>/mailchimp/3.0``; ``google_url`` = ``<base>/google`` (clients
    append ``/v1/audienceMembers:ingest``...).
    """

    base_url: str
    meta_token: str
    mailchimp_token: str
    state_dir: Path
    port: int
    google_token: str = DEFAULT_GOOGLE_TOKEN
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    @property
    def google_url(self) -> str:
        return f"{self.base_url}/google"

    def google_members(self, audience_id: str) -> list[dict[str, Any]]:
        """Members of a Google audience once processed: ``{"identifiers": [sorted hashes],
        "consent": {"adUserData", "adPersonalization"}}``, sorted by first identifier."""
        return self._call("GET", "google", f"audiences/{audience_id}")["members"]

    def google_settings(self, *, processing_delay_s: float) -> None:
        """Seconds a Google request stays PROCESSING before it is applied."""
        self._call("POST", "google", "settings", {"processing_delay_s": processing_delay_s})

    def meta_restrict(self, audience_id: str) -> None:
        """Flag a Meta audience as restricted: its edits get 'Audience Upload Blocked'."""
        self._call("POST", "meta", "restrict", {"audience_id": audience_id})

    def google_eea_users(self, identifiers: list[str]) -> None:
        """Mark identifier hashes as users in the EEA (uploads then need both consents)."""
        self._call("POST", "google", "eea_users", {"identifiers": identifiers})

    @property
    def meta_url(self) -> str:
        return f"{self.base_url}/meta"

    @property
    def mailchimp_url(self) -> str:
        return f"{self.base_url}/mailchimp/3.0"

    def control_url(self, platform: str, sub: str) -> str:
        """``<base>/<platform>/_control/<sub>``; raises ValueError for an unknown platform."""
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}, got {platform!r}")
        return f"{self.base_url}/{platform}/_control/{sub}"

    def _call(self, method: str, platform: str, sub: str, body: Any = None) -> Any:
        response = self._session.request(
            method, self.control_url(platform, sub), json=body, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def reset(self, platform: str | None = None) -> None:
        """Wipe one platform, or all when ``platform`` is None."""
        for p in (platform,) if platform else PLATFORMS:
            self._call("POST", p, "reset")

    def meta_members(self, audience_id: str) -> list[str]:
        """Sorted member hashes of a Meta audience."""
        return self._call("GET", "meta", f"audiences/{audience_id}")["members"]

    def mailchimp_members(self, list_id: str) -> list[dict[str, Any]]:
        """Contacts of a Mailchimp list, sorted by hash: ``{"hash", "email_address", "status",
        "merge_fields", "last_changed"}`` (email_address None once forgotten)."""
        return self._call("GET", "mailchimp", f"audiences/{list_id}")["members"]

    def requests_log(self, platform: str, *, since_id: int = 0) -> list[dict[str, Any]]:
        """Logged client requests, oldest first: ``{"id", "method", "path", "query", "status",
        "fault", "at", "values"}`` (status None for a dropped connection)."""
        return self._call("GET", platform, f"requests?since_id={since_id}")["requests"]

    def violations(self, platform: str) -> dict[str, Any]:
        """Violation counts by kind plus ``samples`` (e.g. ``{"raw_identifier": 0, ...}``)."""
        return self._call("GET", platform, "violations")

    def add_fault(
        self, platform: str, match: dict[str, Any], action: dict[str, Any], *, times: int = 1
    ) -> list[int]:
        """Queue a fault (see ``destinations.mock.faults``); returns the fault ids."""
        body = {"match": match, "action": action, "times": times}
        return self._call("POST", platform, "faults", body)["ids"]

    def clear_faults(self, platform: str | None = None) -> None:
        """Drop queued faults of one platform, or both."""
        for p in (platform,) if platform else PLATFORMS:
            self._call("DELETE", p, "faults")

    def seed(self, platform: str, body: dict[str, Any]) -> dict[str, Any]:
        """Put members in place (see ``destinations.mock.control``)."""
        return self._call("POST", platform, "seed", body)

    def close(self) -> None:
        """Close the control session."""
        self._session.close()


@contextlib.contextmanager
def running_mock(
    state_dir: Path,
    *,
    port: int = 0,
    meta_token: str | None = None,
    mailchimp_token: str | None = None,
    google_token: str | None = None,
) -> Iterator[MockHandle]:
    """Run ``python -m destinations.mock`` on ``port`` (0 = free port) with state in
    ``state_dir`` until the block exits. Tokens default like the server's (env, then
    ``mock-meta-token`` / ``mock-mailchimp-token``); they are passed through the environment.

    Raises :class:`MockStartError` (with the server's stderr) if it is not ready within 20 s.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    meta_token = meta_token or os.environ.get("MOCK_META_TOKEN") or DEFAULT_META_TOKEN
    mailchimp_token = (
        mailchimp_token or os.environ.get("MOCK_MAILCHIMP_TOKEN") or DEFAULT_MAILCHIMP_TOKEN
    )
    google_token = google_token or os.environ.get("MOCK_GOOGLE_TOKEN") or DEFAULT_GOOGLE_TOKEN
    ready_file = state_dir / f"ready-{uuid.uuid4().hex[:8]}.port"
    stderr_path = state_dir / f"mock-stderr-{ready_file.stem[6:]}.log"
    env = {**os.environ, "MOCK_META_TOKEN": meta_token, "MOCK_MAILCHIMP_TOKEN": mailchimp_token}
    env["MOCK_GOOGLE_TOKEN"] = google_token
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGES_DIR), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "destinations.mock", "--port", str(port)]
    cmd += ["--state-dir", str(state_dir), "--ready-file", str(ready_file)]
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd,
            cwd=_PACKAGES_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    handle: MockHandle | None = None
    try:
        bound = _wait_ready(proc, ready_file, stderr_path)
        handle = MockHandle(
            f"http://127.0.0.1:{bound}", meta_token, mailchimp_token, state_dir, bound, google_token
        )
        yield handle
    finally:
        if handle is not None:
            handle.close()
        _stop(proc)
        ready_file.unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen[bytes], ready_file: Path, stderr_path: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MockStartError(
                f"mock server exited with code {proc.returncode}: {_tail(stderr_path)}"
            )
        port = _read_port(ready_file)
        if port and _healthy(port):
            return port
        time.sleep(0.05)
    raise MockStartError(
        f"mock server not ready after {START_TIMEOUT_S:.0f} s: {_tail(stderr_path)}"
    )


def _read_port(ready_file: Path) -> int | None:
    try:
        return int(ready_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _tail(path: Path, limit: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-limit:].strip() or "(no stderr output)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL after 5 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
