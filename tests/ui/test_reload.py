"""A new segment file appears in a running ``dagster dev`` without a manual reload: the watcher
``make ui`` runs beside it asks the webserver to reload the code location."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from orchestrator.reload import watch
from tests.conftest import REPO
from tests.ui.test_browser import _graphql, webserver  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ASSETS = "{ assetNodes { assetKey { path } } }"


@pytest.fixture
def project_env(
    project_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The project environment with a segments folder of its own holding one segment."""
    folder = tmp_path / "segments"
    folder.mkdir()
    shutil.copyfile(REPO / "segments" / "recent_buyers_eu.yaml", folder / "recent_buyers_eu.yaml")
    monkeypatch.setenv("ACTIVATION_SEGMENTS_DIR", str(folder))
    return {**project_env, "ACTIVATION_SEGMENTS_DIR": str(folder)}


def _segments(url: str) -> set[str]:
    nodes = _graphql(url, ASSETS)["assetNodes"]
    return {n["assetKey"]["path"][1] for n in nodes if n["assetKey"]["path"][0] == "segment"}


def test_a_new_segment_file_appears_without_a_manual_reload(
    project_env: dict[str, str],
    webserver: str,  # noqa: F811 - the imported fixture
) -> None:
    folder = Path(project_env["ACTIVATION_SEGMENTS_DIR"])
    assert _segments(webserver) == {"recent_buyers_eu"}
    watcher = threading.Thread(
        target=watch, args=([folder], webserver), kwargs={"poll_s": 0.5, "rounds": 20}
    )
    watcher.start()
    time.sleep(1.5)  # the watcher has taken its first look
    shutil.copyfile(REPO / "segments" / "mug_buyers_60d.yaml", folder / "mug_buyers_60d.yaml")
    watcher.join(timeout=120)

    assert _segments(webserver) == {"recent_buyers_eu", "mug_buyers_60d"}
