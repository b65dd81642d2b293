"""The commands about jobs: submit, watch, jobs, status, logs, cancel, download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from taas.app.cli.session import (
    EXIT_INTERRUPTED,
    EXIT_REQUEST_FAILED,
    api_client,
    exit_code_for,
    read_json,
    run_request,
)

EXIT_CODES_HELP = (
    "Exit status: 0 the job succeeded, 3 it failed, 4 it was cancelled; 1 a request failed "
    "(server unreachable, key refused, unknown job), 2 bad usage, 130 Ctrl-C. Ctrl-C stops "
    "watching only: the job keeps running (`taas cancel JOB` stops it)."
)


def _watch_job(client: Any, job_id: str, view: Any = None) -> None:
    """Show the job's events until its end, then exit with its outcome's code."""
    import sys

    from taas.app.cli.job_feed import job_events
    from taas.app.cli.watch import LiveView, PlainView, watch

    if view is None and sys.stdout.isatty():
        from rich.console import Console

        view = LiveView(Console(), job_id)
    view = view or PlainView(sys.stdout)
    events = job_events(client, job_id, notice=view.note)
    try:
        end = run_request(lambda: watch(events, view), job_id=job_id)
    except KeyboardInterrupt:
        view.close()
        typer.echo(
            f"stopped watching {job_id}; the job keeps running (`taas cancel {job_id}` stops it)",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(exit_code_for(end["status"]) if end else EXIT_REQUEST_FAILED)


def submit(
    spec_file: Annotated[
        str,
        typer.Argument(
            help="the job spec: a JSON file, - to read it from standard input, or inline "
            """'{"dataset": "fashion_mnist"}'""",
            metavar="SPEC",
        ),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="then watch it to the end, as `taas watch` does")
    ] = False,
) -> None:
    """Submit a job spec; prints the job id (and watches the job to its end with --wait)."""
    spec = read_json(spec_file)
    with api_client() as client:
        job = run_request(lambda: client.submit(spec), spec=spec)
        typer.echo(job["id"])
        if wait:
            _watch_job(client, job["id"])


def watch(job_id: str) -> None:
    """Follow a job live: progress, metrics, status changes and logs, then its outcome.

    In a terminal, a progress bar (epoch, fraction, samples/s, ETA, latest train loss and
    validation accuracy); otherwise one plain line per event. Reads the job's event stream and
    resumes it after a dropped connection; polls a server that has no stream."""
    with api_client() as client:
        _watch_job(client, job_id)


def jobs(
    status: Annotated[str | None, typer.Option(help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option(help="how many (a page)", min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="the next page, as the last one said")] = None,
) -> None:
    """List your jobs, newest first: how long each waited and ran, and its accuracy."""
    from taas.app.cli.format import job_table

    with api_client() as client:
        page = run_request(lambda: client.jobs(status=status, limit=limit, cursor=cursor))
    if not page["items"]:
        typer.echo("no jobs" + (f" in status {status}" if status else ""))
        return
    for line in job_table(page["items"]):
        typer.echo(line)
    if page.get("next_cursor"):  # said on stderr: the table stays a table for scripts
        same_status = f" --status {status}" if status else ""
        typer.echo(f"more jobs: taas jobs --cursor {page['next_cursor']}{same_status}", err=True)


def status(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="the job as the API returns it")] = False,
) -> None:
    """Show a job: status, progress, times, device, metrics per epoch, error, artifacts."""
    from taas.app.cli.format import job_summary

    with api_client() as client:
        job = run_request(lambda: client.job(job_id), job_id=job_id)
        if as_json:
            typer.echo(json.dumps(job, indent=2))
            return
        points = run_request(lambda: client.metrics(job_id), job_id=job_id)
        artifacts = run_request(lambda: client.artifacts(job_id), job_id=job_id)
    for line in job_summary(job, points, artifacts):
        typer.echo(line)


def logs(
    job_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events until the job ends")
    ] = False,
) -> None:
    """Print a job's events: status changes and messages from its attempts."""
    import sys

    from taas.app.cli.format import event_line
    from taas.app.cli.job_feed import history_items
    from taas.app.cli.watch import LogView

    with api_client() as client:
        if follow:
            _watch_job(client, job_id, LogView(sys.stdout))
        items = run_request(lambda: client.events(job_id), job_id=job_id)
    for event in history_items(items, job_id):
        typer.echo(event_line(event.type, event.data))


def cancel(job_id: str) -> None:
    """Cancel a job (a running one stops within one batch)."""
    with api_client() as client:
        job = run_request(lambda: client.cancel(job_id), job_id=job_id)
    typer.echo(f"{job['id']} {job['status']}")


def checkpoints(job_id: str) -> None:
    """List a job's kept checkpoints: epoch, step, that epoch's validation scores, the file."""
    from taas.app.cli.format import checkpoint_table

    with api_client() as client:
        kept = run_request(lambda: client.checkpoints(job_id), job_id=job_id)
    if not kept:
        typer.echo(f"job {job_id} keeps no checkpoint")
        return
    for line in checkpoint_table(kept):
        typer.echo(line)


def download(
    job_id: str,
    out: Annotated[Path | None, typer.Option("--out", help="folder (default: ./JOB_ID)")] = None,
) -> None:
    """Download every artifact of a job, each verified against its sha256."""
    folder = out or Path(job_id)
    with api_client() as client:
        try:
            paths = run_request(lambda: client.download(job_id, folder), job_id=job_id)
        except OSError as error:  # this machine's side: --out is a file, not writable, full
            typer.echo(f"cannot write the files to {folder}: {error.strerror or error}", err=True)
            raise typer.Exit(EXIT_REQUEST_FAILED) from None
        if not paths:
            job = run_request(lambda: client.job(job_id), job_id=job_id)
            typer.echo(f"job {job_id} has no files to download (status: {job['status']})", err=True)
            raise typer.Exit(EXIT_REQUEST_FAILED)
    for path in paths:
        typer.echo(str(path))
