"""The `taas` command: the root of its subcommands, and the one place where a database that
cannot be reached becomes a sentence instead of a traceback."""

from __future__ import annotations

import typer

from taas.app.cli import jobs, service
from taas.app.cli.datasets import datasets_cli
from taas.app.cli.jobs import EXIT_CODES_HELP
from taas.app.cli.keys import keys_cli
from taas.app.cli.storage import storage_cli
from taas.app.cli.sweeps import sweep_cli
from taas.app.cli.tenants import tenants_cli
from taas.app.core.config import get_settings

cli = typer.Typer(
    help="taas: training as a service.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # a docstring's paragraphs wrap to the terminal
)
# Running the service:
cli.command()(service.serve)
cli.command()(service.api)
cli.command()(service.worker)
cli.command()(service.migrate)
# Using it:
cli.command(epilog=EXIT_CODES_HELP)(jobs.submit)
cli.command(epilog=EXIT_CODES_HELP)(jobs.watch)
cli.command()(jobs.jobs)
cli.command()(jobs.status)
cli.command(epilog="With --follow, " + EXIT_CODES_HELP[0].lower() + EXIT_CODES_HELP[1:])(jobs.logs)
cli.command()(jobs.cancel)
cli.command()(jobs.checkpoints)
cli.command()(jobs.download)
cli.add_typer(keys_cli, name="keys")
cli.add_typer(tenants_cli, name="tenants")
cli.add_typer(datasets_cli, name="datasets")
cli.add_typer(sweep_cli, name="sweep")
cli.add_typer(storage_cli, name="storage")


@cli.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Measure the accelerated trainer against the plain PyTorch loop (options: --help)."""
    from taas.worker.trainer import bench as trainer_bench

    # The options live in one place, the bench's own parser: forward them all, --help included.
    raise typer.Exit(trainer_bench.main(ctx.args, prog="taas bench"))


def main() -> None:
    from sqlalchemy.exc import DBAPIError

    try:
        cli()
    except DBAPIError as error:
        # One line an operator can act on, instead of a driver traceback: the database is
        # unreachable, or its schema was never made.
        typer.echo(
            f"database error ({_database_shown()}): {str(error.orig).strip()}; check "
            "TAAS_DATABASE_URL, and run `taas migrate` once before the first start",
            err=True,
        )
        raise SystemExit(1) from None


def _database_shown() -> str:
    from sqlalchemy.engine import make_url

    url = make_url(get_settings().resolved_database_url)
    return url.render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
