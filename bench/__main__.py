"""``python -m bench run --customers 100000``: the benchmark (see ``bench/README.md``).

``python -m bench stage <kind> JOB RESULT`` runs one stage; the runner calls it, one fresh
process per stage.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@click.group()
def main() -> None:
    """Benchmark of the activation pipeline against the mock destinations."""


@main.command()
@click.option("--customers", type=click.IntRange(min=100), default=100_000, show_default=True)
@click.option("--seed", type=int, default=None, help="Default: the scenario's fixed seed.")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the warehouse, state and mock live (default: a temporary folder).",
)
@click.option(
    "--results-dir", type=click.Path(path_type=Path), default=RESULTS_DIR, show_default=True
)
@click.option("--keep", is_flag=True, help="Keep the work folder (warehouse, logs).")
@click.option(
    "--warehouse",
    "backend",
    type=click.Choice(["duckdb", "postgres"]),
    default="duckdb",
    show_default=True,
    help="postgres: the stages and the naive baselines on a copy of the generated warehouse "
    "in PostgreSQL (bench/backend.py).",
)
@click.option(
    "--postgres-url",
    default=None,
    help="With --warehouse postgres: postgresql://user@host:port/db (password in "
    "ACTIVATION_DEMO_PG_PASSWORD); default: a local server started in the work folder.",
)
def run(
    customers: int,
    seed: int | None,
    workdir: Path | None,
    results_dir: Path,
    keep: bool,
    backend: str,
    postgres_url: str | None,
) -> None:
    """Generate, run the full, incremental and no-change syncs, write the results."""
    from bench.report import latest_at, latest_smaller, write_results
    from bench.runner import run_benchmark
    from bench.scenario import DEFAULT_SEED
    from bench.side_by_side import write_side_by_side

    owned = workdir is None
    work = Path(tempfile.mkdtemp(prefix="activation-bench-")) if owned else workdir
    try:
        results = run_benchmark(
            customers, work, seed=DEFAULT_SEED if seed is None else seed, log=click.echo,
            backend=backend, postgres_url=postgres_url,
        )  # fmt: skip
        smaller = latest_smaller(results_dir, customers, backend)
        json_path, md_path, text = write_results(results, results_dir, smaller)
    finally:
        if owned and not keep:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(text)
    click.echo(f"wrote {json_path} and {md_path}")
    other = latest_at(results_dir, customers, "duckdb" if backend == "postgres" else "postgres")
    if other is not None:
        duck, pg = (other, results) if backend == "postgres" else (results, other)
        click.echo(f"wrote {write_side_by_side(duck, pg, results_dir)}")


@main.command()
@click.option("--customers", type=click.IntRange(min=100), default=100_000, show_default=True)
@click.option("--seed", type=int, default=None, help="Default: the scenario's fixed seed.")
@click.option(
    "--postgres-url",
    default=None,
    help="postgresql://user@host:port/db (password in BENCH_PG_PASSWORD); default: a "
    "server started for the run.",
)
@click.option(
    "--results-dir", type=click.Path(path_type=Path), default=RESULTS_DIR, show_default=True
)
def warehouses(
    customers: int, seed: int | None, postgres_url: str | None, results_dir: Path
) -> None:
    """The segment, audience and diff stages on DuckDB and on PostgreSQL, side by side."""
    from bench.scenario import DEFAULT_SEED
    from bench.warehouses import compare_warehouses, render_markdown, write_results

    work = Path(tempfile.mkdtemp(prefix="activation-bench-wh-"))
    try:
        results = compare_warehouses(
            customers, work, seed=DEFAULT_SEED if seed is None else seed,
            postgres_url=postgres_url,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    json_path, md_path = write_results(results, results_dir)
    click.echo(render_markdown(results))
    click.echo(f"wrote {json_path} and {md_path}")


@main.command(hidden=True)
@click.argument("kind")
@click.argument("job_file", type=click.Path(path_type=Path, exists=True))
@click.argument("result_file", type=click.Path(path_type=Path))
def stage(kind: str, job_file: Path, result_file: Path) -> None:
    """Run one stage in this process (used by the runner)."""
    from bench.stages import run_stage_file

    run_stage_file(kind, job_file, result_file)


if __name__ == "__main__":
    main()
