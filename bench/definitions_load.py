"""How long 500 segment files take to load: ``python -m bench.definitions_load``.

Run by hand (not a timed test); numbers in ``bench/README.md``. It writes ``--segments`` files
into a temporary folder, copies of the five examples with their own names and audience ids
(one in five is the ``sql:`` example), then measures, each in a fresh process as Dagster does:

- ``load``: :func:`orchestrator.segments.loader.load_segments` alone (imports excluded);
- ``import``: ``import orchestrator.definitions`` (what every step process of a run pays);
- ``validate``: ``dagster definitions validate -m orchestrator.definitions``.

Each is printed as wall and CPU seconds: the machine is shared, and CPU time moves much less
than wall time when other work runs.

``--code DIR`` measures another checkout of the code (its ``orchestrator`` package first on
``PYTHONPATH``), for before/after numbers on the same machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = (
    "recent_buyers_eu",
    "mug_buyers_60d",
    "lapsed_high_value",
    "one_time_buyers",
    "loyal_no_refund_sql",
)

_LOAD = (
    "import time, sys, resource; from pathlib import Path;"
    "from orchestrator.config import load_project_config;"
    "from orchestrator.segments.loader import load_segments;"
    "p = load_project_config(Path(sys.argv[1]));"
    "cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2]);"
    "t, c = time.perf_counter(), cpu(); r = load_segments(Path(sys.argv[2]), p);"
    "print(time.perf_counter() - t, cpu() - c, len(r.specs), len(r.errors))"
)
_IMPORT = (
    "import time, resource; cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2]);"
    "t, c = time.perf_counter(), cpu(); import orchestrator.definitions as d;"
    "print(time.perf_counter() - t, cpu() - c)"
)


def write_segments(folder: Path, count: int) -> None:
    """``count`` segment files in ``folder``: the examples renamed, each audience its own."""
    folder.mkdir(parents=True, exist_ok=True)
    examples = [
        yaml.safe_load((REPO / "segments" / f"{name}.yaml").read_text()) for name in EXAMPLES
    ]
    for index in range(count):
        data = dict(examples[index % len(examples)])
        data["name"] = f"bench_segment_{index:04d}"
        data["destinations"] = [
            {**entry, "audience_id": f"b{index:04d}{position}"}
            for position, entry in enumerate(data["destinations"])
        ]
        (folder / f"bench_segment_{index:04d}.yaml").write_text(yaml.safe_dump(data))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, str]:
    """(wall s, CPU s of the child process, last line of its output). ``cwd`` must not hold
    another checkout: Python puts the working directory first on the import path."""
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        raise click.ClickException(f"{' '.join(command[:3])} failed:\n{done.stderr[-2000:]}")
    return wall, cpu, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@click.command()
@click.option("--segments", "count", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--code",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO,
    show_default=True,
    help="Checkout whose orchestrator package is measured.",
)
def main(count: int, code: Path) -> None:
    """Write COUNT segment files and time loading them (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="activation-defs-bench-") as tmp:
        folder = Path(tmp) / "segments"
        write_segments(folder, count)
        env = {
            **os.environ,
            "PYTHONPATH": f"{code}{os.pathsep}{REPO}",
            "ACTIVATION_PROJECT_DIR": str(code),
            "ACTIVATION_SEGMENTS_DIR": str(folder),
            "ACTIVATION_CONFIG": str(REPO / "activation.yaml"),
            "ACTIVATION_WAREHOUSE": str(Path(tmp) / "warehouse.duckdb"),
            "ACTIVATION_STATE_DIR": str(Path(tmp) / "state"),
            "DAGSTER_HOME": tmp,
        }
        python = sys.executable
        *_, load = _timed([python, "-c", _LOAD, env["ACTIVATION_CONFIG"], str(folder)], env, tmp)
        *_, imported = _timed([python, "-c", _IMPORT], env, tmp)
        dagster = str(Path(python).with_name("dagster"))
        command = [dagster, "definitions", "validate", "-m", "orchestrator.definitions"]
        validate, validate_cpu, _ = _timed(command, env, tmp)
    seconds, cpu, specs, errors = load.split()
    import_wall, import_cpu = (float(v) for v in imported.split())
    click.echo(f"segments: {count} files ({specs} valid, {errors} errors), code: {code}")
    click.echo(f"load_segments: {float(seconds):.2f} s wall, {float(cpu):.2f} s CPU")
    click.echo(f"import orchestrator.definitions: {import_wall:.2f} s wall, {import_cpu:.2f} s CPU")
    click.echo(f"dagster definitions validate: {validate:.2f} s wall, {validate_cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
