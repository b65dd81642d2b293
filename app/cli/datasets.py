"""`taas datasets`: upload, list and delete datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taas.app.cli.session import api_client, run_request

datasets_cli = typer.Typer(help="Upload, list and delete datasets.", no_args_is_help=True)


@datasets_cli.command("upload")
def datasets_upload(
    file: Annotated[
        Path,
        typer.Argument(help=".npz, .csv or .zip of class folders", exists=True, dir_okay=False),
    ],
    name: Annotated[str | None, typer.Option(help="default: the file name")] = None,
    label_column: Annotated[str | None, typer.Option(help="CSV: default 'label'")] = None,
    image_size: Annotated[str | None, typer.Option(help="zip: HxW, e.g. 28x28")] = None,
    direct: Annotated[
        bool | None,
        typer.Option(
            "--direct/--through-api",
            help="send the file straight to the server's object storage (presigned URLs), or "
            "through the API; default: direct above 64 MiB where the server offers it",
        ),
    ] = None,
) -> None:
    """Upload a dataset; prints its id (use it as the job spec's "dataset")."""
    fields = {"label_column": label_column or "", "image_size": image_size or ""}
    with api_client() as client:
        dataset = run_request(lambda: client.upload_dataset(file, name, direct=direct, **fields))
    if name and dataset["name"] != name:  # the same bytes were uploaded before: one dataset
        typer.echo(
            f"this file was uploaded before, as {dataset['name']!r}: that dataset is the one used",
            err=True,
        )
    typer.echo(dataset["id"])


@datasets_cli.command("list")
def datasets_list() -> None:
    """The built-in datasets (and whether this server has them) and your uploads."""
    from taas.app.cli.format import table

    with api_client() as client:
        items = run_request(client.datasets)
    rows = [
        (
            item["id"],
            item["name"][:30],
            "x".join(str(size) for size in item["shape"]),
            f"{item['num_classes']:,}",
            f"{item['train_size']:,}",
            "yes" if item["available"] else "no",
        )
        for item in items
    ]
    headers = ("ID", "NAME", "SHAPE", "CLASSES", "TRAIN", "AVAILABLE")
    for line in table(headers, rows, right=frozenset({3, 4})):
        typer.echo(line)
    for item in items:  # why a built-in cannot be used here, under the table
        if not item["available"]:
            typer.echo(f"{item['id']}: {item['reason']}")


@datasets_cli.command("delete")
def datasets_delete(dataset_id: str) -> None:
    """Delete one of your uploads (refused while unfinished jobs use it)."""
    with api_client() as client:
        run_request(lambda: client.delete_dataset(dataset_id))
    typer.echo(f"{dataset_id} deleted")
