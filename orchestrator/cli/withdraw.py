"""``activation withdraw EMAIL --purpose P`` (or ``--all``): record a consent withdrawal.

Recorded in the product's own ``activation.consent_intake`` (never in the company's tables),
hashed on entry, merged into the consent view every reader uses
(:mod:`orchestrator.privacy.intake`). Prints the withdrawal id, the purposes and the subject
by its hash prefix; never the address.
"""

from __future__ import annotations

import click

from orchestrator.cli import _require_warehouse, _warehouse_errors
from orchestrator.cli.output import FORMATS, echo_json
from orchestrator.config import load_project_config
from orchestrator.settings import Settings

#: Characters of the subject key shown (as the other privacy commands).
HASH_PREFIX = 12


@click.command(name="withdraw")
@click.argument("email")
@click.option(
    "--purpose",
    "purposes",
    multiple=True,
    metavar="PURPOSE",
    help="A declared purpose the consent is withdrawn for (repeat for several).",
)
@click.option("--all", "all_purposes", is_flag=True, help="Withdraw for every declared purpose.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def withdraw_command(email: str, purposes: tuple[str, ...], all_purposes: bool, fmt: str) -> None:
    """Record that EMAIL withdraws consent for PURPOSE (GDPR Article 7(3))."""

    from orchestrator.privacy.intake import address_keys, record_withdrawal

    settings = Settings.from_env()
    project = load_project_config(settings.config_path)
    if all_purposes == bool(purposes):
        raise click.UsageError("give --purpose PURPOSE (one or more) or --all")
    unknown = [purpose for purpose in purposes if purpose not in project.purposes]
    if unknown:
        raise click.ClickException(
            f"unknown purpose {unknown[0]!r}; declared purposes: {', '.join(project.purposes)}"
        )
    try:
        address_keys(email)
    except ValueError as error:
        raise click.ClickException(f"EMAIL: {error}") from None
    warehouse = _require_warehouse(settings, project)
    chosen = tuple(project.purposes) if all_purposes else tuple(dict.fromkeys(purposes))
    with _warehouse_errors():
        done = record_withdrawal(warehouse, email, chosen, project=project)
    record = {
        "withdrawal_id": done.withdrawal_id,
        "subject": done.subject[:HASH_PREFIX],
        "purposes": list(done.purposes),
        "customers": len(done.customers),
    }
    if fmt == "json":
        echo_json(record)
        return
    click.echo(
        f"recorded withdrawal {done.withdrawal_id} for subject {record['subject']}… "
        f"({', '.join(done.purposes)})"
    )
    if not done.customers:
        click.echo("no customer has this address: nothing to remove; the record is kept.")
    else:
        click.echo(
            "it applies at the next audience step, and the privacy sensor removes the person "
            "from the destinations serving these purposes."
        )
