"""`taas storage`: the operator's commands for the object store (straight to the database and
the store; no server needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from taas.app.cli.session import EXIT_REQUEST_FAILED, EXIT_USAGE

storage_cli = typer.Typer(
    help="Object storage: remove orphaned objects, move a deployment into a bucket.",
    no_args_is_help=True,
)
DRY_RUN = typer.Option("--dry-run", help="only say what would be done")


@storage_cli.command("gc")
def gc(dry_run: Annotated[bool, DRY_RUN] = False) -> None:
    """Delete objects that no job, dataset or upload names (older than
    TAAS_STORAGE_ORPHAN_SECONDS), unfinished uploads, and expired dataset uploads."""
    from taas.app.core.config import get_settings
    from taas.app.storage.factory import store_for
    from taas.app.storage.maintenance import collect_garbage
    from taas.app.storage.objects import StorageUnavailable

    settings = get_settings()
    store = store_for(settings)
    try:
        collected = collect_garbage(store, settings, dry_run=dry_run)
    except StorageUnavailable as error:
        typer.echo(f"storage gc stopped: {error.message}", err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None
    verb = "would delete" if dry_run else "deleted"
    for key in collected.deleted:
        typer.echo(f"{verb} {key}")
    for key in collected.aborted:
        typer.echo(f"{'would abort' if dry_run else 'aborted'} the unfinished upload of {key}")
    typer.echo(f"{store.name}: {verb} {collected.describe()}")


@storage_cli.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="the bucket: s3://bucket/prefix")],
    dry_run: Annotated[bool, DRY_RUN] = False,
) -> None:
    """Copy this deployment's files (TAAS_ARTIFACT_DIR, TAAS_DATASET_DIR) into object storage,
    each verified by sha256; run it again to resume, it skips what is there. Then set
    TAAS_STORAGE_URL to the same URL on every API and worker host."""
    from pydantic import ValidationError

    from taas.app.core.config import Settings, get_settings
    from taas.app.storage.filesystem import FileObjectStore
    from taas.app.storage.maintenance import migrate_objects
    from taas.app.storage.objects import StorageUnavailable
    from taas.app.storage.s3 import S3ObjectStore

    settings = get_settings()
    try:
        target = Settings(storage_url=to).storage_url
    except ValidationError:
        typer.echo(f"--to {to!r}: give s3://bucket or s3://bucket/prefix", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if settings.storage_url:
        typer.echo(
            f"TAAS_STORAGE_URL is {settings.storage_url}: this deployment already uses object "
            "storage; unset it to migrate the files on this host's disk",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    assert target is not None
    source = FileObjectStore(settings.resolved_artifact_dir, settings.resolved_dataset_dir)
    destination = S3ObjectStore(target, settings.home.resolve() / "staging")
    try:
        destination.check()
        migrated = migrate_objects(source, destination, dry_run=dry_run, say=typer.echo)
    except StorageUnavailable as error:
        typer.echo(f"migration stopped (run it again to resume): {error.message}", err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None
    typer.echo(f"{'dry run: ' if dry_run else ''}{target}: {migrated.describe()}")
    if migrated.missing or migrated.corrupt:
        typer.echo("some objects could not be moved: see the lines above", err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED)
    if not dry_run:
        typer.echo(f"done: set TAAS_STORAGE_URL={target} on every API and worker, then restart")
