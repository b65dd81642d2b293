"""`taas tenants`: the operator's settings of a tenant, written to the database directly."""

from __future__ import annotations

from typing import Annotated

import typer

from taas.app.cli.keys import offline

tenants_cli = typer.Typer(help="Operator: tenants' scheduling limits.", no_args_is_help=True)


@tenants_cli.command("set")
def tenants_set(
    tenant: str,
    max_running: Annotated[
        str,
        typer.Option(
            help="jobs it may run at once per queue, or `none` for the service's setting "
            "(TAAS_MAX_RUNNING_PER_TENANT)"
        ),
    ],
) -> None:
    """Set a tenant's own cap on running jobs (on the database directly, no server needed)."""
    from taas.app.auth.service import find_tenant
    from taas.app.core.db import session_scope

    cap = _running_cap(max_running)
    with session_scope() as session:
        found = offline(lambda: find_tenant(session, tenant))
        found.max_running = cap
    typer.echo(f"{tenant}: max_running {'not set' if cap is None else cap}")


def _running_cap(value: str) -> int | None:
    if value == "none":
        return None
    if not value.isdigit() or not 1 <= int(value) <= 100_000:
        raise typer.BadParameter(
            f"{value!r} is not a number of jobs from 1 to 100000, or `none`",
            param_hint="--max-running",
        )
    return int(value)
