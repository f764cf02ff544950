"""Reload the Dagster UI's code location when a segment file (or ``activation.yaml``) changes.

``dagster dev`` loads the definitions once; a new or edited segment file shows only after
"Reload definitions". ``make ui`` runs this watcher beside it: every :data:`POLL_S` seconds it
compares the names, sizes and modification times of ``segments/*.yaml`` and the project config
with what it saw, and on a change asks the webserver to reload the location through Dagster's
GraphQL API (mutation ``reloadRepositoryLocation``, the same call as the UI's button). A broken
file then shows in ``segment_file_errors`` like at start-up.

Run as ``python -m orchestrator.reload --port 3000``; stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path

import click
import requests

from orchestrator.settings import Settings

#: The location name ``workspace.yaml`` gives the definitions (its ``module_name``).
LOCATION = "orchestrator.definitions"
POLL_S = 2.0
MUTATION = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) { __typename }
}
"""

Snapshot = frozenset[tuple[str, int, int]]


def snapshot(paths: Iterable[Path]) -> Snapshot:
    """(name, size, mtime in ns) of every segment file in the folders and of the files given."""
    found = []
    for path in paths:
        files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
            except FileNotFoundError:
                continue
            found.append((str(file), stat.st_size, stat.st_mtime_ns))
    return frozenset(found)


def reload_location(base_url: str, location: str = LOCATION) -> str:
    """Ask the webserver at ``base_url`` to reload ``location``; returns the GraphQL
    ``__typename`` of the answer (``WorkspaceLocationEntry`` on success).

    Raises:
        requests.RequestException: the webserver did not answer 2xx.
    """
    answer = requests.post(
        f"{base_url}/graphql",
        json={"query": MUTATION, "variables": {"name": location}},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["data"]["reloadRepositoryLocation"]["__typename"]


def watch(paths: list[Path], base_url: str, *, poll_s: float = POLL_S, rounds: int = -1) -> None:
    """Reload the location each time :func:`snapshot` of ``paths`` changes (``rounds`` polls;
    -1: forever). A webserver not up yet is tried again on the next change."""
    seen = snapshot(paths)
    while rounds != 0:
        rounds -= 1
        time.sleep(poll_s)
        now = snapshot(paths)
        if now == seen:
            continue
        try:
            result = reload_location(base_url)
        except requests.RequestException as error:
            click.echo(f"segment files changed; reload failed ({type(error).__name__})", err=True)
            continue
        seen = now
        click.echo(f"segment files changed: code location reloaded ({result})", err=True)


@click.command()
@click.option("--port", type=int, default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def main(port: int, host: str) -> None:
    """Watch the segment files and reload the Dagster UI's code location on a change."""
    settings = Settings.from_env()
    with contextlib.suppress(KeyboardInterrupt):
        watch([settings.segments_dir, settings.config_path], f"http://{host}:{port}")


if __name__ == "__main__":
    main()
