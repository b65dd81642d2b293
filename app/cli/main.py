"""The `taas` command: run the service (serve, api, worker, migrate, keys) and use it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from taas.app.auth.scopes import Scope
from taas.app.core.config import get_settings
from taas.worker.resources.devices import MAX_JOBS_PER_GPU

cli = typer.Typer(
    help="taas: training as a service.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # a docstring's paragraphs wrap to the terminal
)
keys_cli = typer.Typer(help="Manage API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
tenants_cli = typer.Typer(help="Operator: tenants' scheduling limits.", no_args_is_help=True)
cli.add_typer(tenants_cli, name="tenants")
datasets_cli = typer.Typer(help="Upload, list and delete datasets.", no_args_is_help=True)
cli.add_typer(datasets_cli, name="datasets")
sweep_cli = typer.Typer(
    help="Search hyperparameters: submit a sweep, follow it, read its leaderboard.",
    no_args_is_help=True,
)
cli.add_typer(sweep_cli, name="sweep")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Run everything here: migrations, the API and a local worker (SQLite, no servers).

    Logs go to files under TAAS_HOME/logs; the console shows where things are, and warnings and
    errors."""
    from taas.app.cli.serve import serve as run_embedded

    run_embedded(host, port)


@cli.command()
def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the API server only (production: run `taas migrate` first)."""
    import uvicorn

    from taas.app.observability.logs import uvicorn_log_config
    from taas.app.observability.metrics_dir import metrics_shared_by_processes

    settings = get_settings()
    settings.check_production_safety()
    with metrics_shared_by_processes(workers):
        uvicorn.run(
            "taas.app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=uvicorn_log_config(settings),
        )


@cli.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated queues: cpu, gpu")] = "cpu,gpu",
    concurrency: Annotated[int, typer.Option(help="jobs at once: one per device")] = 1,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="GPU ids, one job process each (more with --jobs-per-gpu), e.g. 0,1,2,3; "
            "sets the concurrency"
        ),
    ] = None,
    jobs_per_gpu: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_JOBS_PER_GPU,
            help="with --gpus: jobs at once on each GPU, each in its own process; they divide "
            "the GPU's memory, and a job that would not fit beside the others waits",
        ),
    ] = 1,
) -> None:
    """Run a Celery worker that trains jobs from the given queues."""
    if gpus is not None:
        concurrency = _processes_for_gpus(gpus, concurrency, jobs_per_gpu)
    elif jobs_per_gpu != 1:
        raise typer.BadParameter("needs --gpus: the GPUs to share", param_hint="--jobs-per-gpu")
    from taas.worker.celery_app import celery_app

    # One job per process: the solo pool runs it in this process; more means prefork children.
    pool = (
        ["--pool=solo"] if concurrency == 1 else ["--pool=prefork", f"--concurrency={concurrency}"]
    )
    quiet = []
    if get_settings().log_format == "json":
        from taas.app.observability.logs import start_json_logging

        start_json_logging(get_settings())
        quiet = ["--quiet"]  # Celery's banner is printed, not logged: no line a pipeline reads
    celery_app.worker_main(
        [
            *quiet,
            "worker",
            "--loglevel=INFO",
            f"--queues={queues}",
            "--without-gossip",
            "--without-mingle",
            *pool,
        ]
    )


def _processes_for_gpus(gpus: str, concurrency: int, jobs_per_gpu: int) -> int:
    """Hand the GPU list to the pool processes (each takes its own, jobs_per_gpu to a GPU);
    returns the number of processes."""
    from taas.worker.resources.devices import GPUS_ENV, JOBS_PER_GPU_ENV, parse_gpus, pin_gpu

    try:
        listed = parse_gpus(gpus)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--gpus") from None
    processes = len(listed) * jobs_per_gpu
    if concurrency not in (1, processes):
        raise typer.BadParameter(
            f"{concurrency} processes for {len(listed)} GPUs with {jobs_per_gpu} jobs each: "
            f"leave --concurrency out (it is {processes})",
            param_hint="--concurrency",
        )
    os.environ[GPUS_ENV] = ",".join(listed)
    os.environ[JOBS_PER_GPU_ENV] = str(jobs_per_gpu)
    if processes == 1:
        pin_gpu(0)  # the solo pool trains in this process
    return processes


@cli.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    from taas.app.core import migrate as migrations

    migrations.upgrade()
    typer.echo("database is at the latest schema")


TenantOption = Annotated[
    str | None,
    typer.Option(
        help="operator: act on this tenant's keys in the database directly (no server, no key; "
        "create makes the tenant if new). Without it, through the API with your admin key."
    ),
]


@keys_cli.command("create")
def keys_create(
    tenant: TenantOption = None,
    name: Annotated[str, typer.Option(help="what the key is for")] = "default",
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            "--scopes",
            help="read (GET only), write (also submit, cancel, upload, delete) or admin (also "
            "manage keys)",
        ),
    ] = "admin",
    expires_in: Annotated[
        str | None, typer.Option(help="e.g. 90d, 12h, 30m (default: never expires)")
    ] = None,
) -> None:
    """Create an API key and print it (it is stored hashed and cannot be shown again)."""
    from taas.app.cli.keys import create_offline, created_note

    checked_scope = _scope(scope)
    expires_at = _expiry(expires_in)
    if tenant is not None:
        key = _offline(lambda: create_offline(tenant, name, checked_scope, expires_at))
    else:
        with _client() as client:
            when = expires_at.isoformat() if expires_at else None
            key = _run(lambda: client.create_key(name, checked_scope, when))
    typer.echo(created_note(key, tenant), err=True)
    typer.echo(key["key"])


@keys_cli.command("list")
def keys_list(tenant: TenantOption = None) -> None:
    """The keys that work (or expired; not revoked ones): id, name, scope and dates."""
    from taas.app.cli.keys import key_table, list_offline

    if tenant is not None:
        keys = _offline(lambda: list_offline(tenant))
    else:
        with _client() as client:
            keys = _run(client.keys)
    for line in key_table(keys):
        typer.echo(line)


@keys_cli.command("revoke")
def keys_revoke(key_id: str, tenant: TenantOption = None) -> None:
    """Revoke a key (`key_...`, from `taas keys list`): refused from its next request on."""
    from taas.app.cli.keys import revoke_offline

    if tenant is not None:
        _offline(lambda: revoke_offline(tenant, key_id))
    else:
        with _client() as client:
            _run(lambda: client.revoke_key(key_id))
    typer.echo(f"{key_id} revoked")


def _scope(value: str) -> Scope:
    from taas.app.auth.scopes import SCOPES

    if value not in SCOPES:
        raise typer.BadParameter(
            f"{value!r} is not a scope: one of {', '.join(SCOPES)}", param_hint="--scope"
        )
    return value


def _expiry(expires_in: str | None) -> datetime | None:
    from taas.app.cli.keys import parse_duration

    if expires_in is None:
        return None
    try:
        return datetime.now(UTC) + parse_duration(expires_in)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--expires-in") from None


def _offline(action: Any) -> Any:
    """Run an operator action on the database; a missing tenant or key is a sentence, exit 1."""
    from taas.app.core.errors import DomainError

    try:
        return action()
    except DomainError as error:
        typer.echo(error.message, err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None


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
        found = _offline(lambda: find_tenant(session, tenant))
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


def _key_file() -> Path:
    return get_settings().home / "api_key"


def _client() -> Any:
    from taas.client import Client

    settings = get_settings()
    key = settings.api_key
    if not key and _key_file().exists():
        key = _key_file().read_text().strip()
    if not key:
        typer.echo(
            f"no API key: set TAAS_API_KEY or run `taas serve` (writes {_key_file()})", err=True
        )
        raise typer.Exit(EXIT_USAGE)
    return Client(settings.api_url, key)


def _run(action: Any, spec: dict[str, Any] | None = None, job_id: str | None = None) -> Any:
    """Run a request; a failure is said in a sentence (app/cli/errors.py) and exits 1."""
    import httpx
    from httpx_sse import SSEError

    from taas.app.cli.errors import Target, explain
    from taas.app.cli.job_feed import StreamLost
    from taas.errors import ApiError

    try:
        return action()
    except (ApiError, httpx.HTTPError, SSEError, StreamLost) as error:
        settings = get_settings()
        key_origin = "TAAS_API_KEY" if settings.api_key else str(_key_file())
        target = Target(settings.api_url, key_origin, spec=spec, job_id=job_id)
        typer.echo(explain(error, target), err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None


EXIT_SUCCEEDED = 0
EXIT_REQUEST_FAILED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_CANCELLED = 4
EXIT_INTERRUPTED = 130
EXIT_CODES_HELP = (
    "Exit status: 0 the job succeeded, 3 it failed, 4 it was cancelled; 1 a request failed "
    "(server unreachable, key refused, unknown job), 2 bad usage, 130 Ctrl-C. Ctrl-C stops "
    "watching only: the job keeps running (`taas cancel JOB` stops it)."
)


def _exit_code(status: str) -> int:
    return {"succeeded": EXIT_SUCCEEDED, "cancelled": EXIT_CANCELLED}.get(status, EXIT_FAILED)


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
        end = _run(lambda: watch(events, view), job_id=job_id)
    except KeyboardInterrupt:
        view.close()
        typer.echo(
            f"stopped watching {job_id}; the job keeps running (`taas cancel {job_id}` stops it)",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(_exit_code(end["status"]) if end else EXIT_REQUEST_FAILED)


@cli.command(epilog=EXIT_CODES_HELP)
def submit(
    spec_file: Annotated[
        Path, typer.Argument(help="job spec JSON file", exists=True, dir_okay=False)
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="then watch it to the end, as `taas watch` does")
    ] = False,
) -> None:
    """Submit a job spec; prints the job id (and watches the job to its end with --wait)."""
    spec = _read_json(spec_file)
    with _client() as client:
        job = _run(lambda: client.submit(spec), spec=spec)
        typer.echo(job["id"])
        if wait:
            _watch_job(client, job["id"])


@cli.command(epilog=EXIT_CODES_HELP)
def watch(job_id: str) -> None:
    """Follow a job live: progress, metrics, status changes and logs, then its outcome.

    In a terminal, a progress bar (epoch, fraction, samples/s, ETA, latest train loss and
    validation accuracy); otherwise one plain line per event. Reads the job's event stream and
    resumes it after a dropped connection; polls a server that has no stream."""
    with _client() as client:
        _watch_job(client, job_id)


@cli.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option(help="how many")] = 20,
) -> None:
    """List your jobs, newest first: how long each waited and ran, and its accuracy."""
    from taas.app.cli.format import job_table

    with _client() as client:
        page = _run(lambda: client.jobs(status=status, limit=limit))
    if not page["items"]:
        typer.echo("no jobs" + (f" in status {status}" if status else ""))
        return
    for line in job_table(page["items"]):
        typer.echo(line)


@cli.command()
def status(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="the job as the API returns it")] = False,
) -> None:
    """Show a job: status, progress, times, device, metrics per epoch, error, artifacts."""
    from taas.app.cli.format import job_summary

    with _client() as client:
        job = _run(lambda: client.job(job_id), job_id=job_id)
        if as_json:
            typer.echo(json.dumps(job, indent=2))
            return
        points = _run(lambda: client.metrics(job_id), job_id=job_id)
        artifacts = _run(lambda: client.artifacts(job_id), job_id=job_id)
    for line in job_summary(job, points, artifacts):
        typer.echo(line)


@cli.command(epilog=EXIT_CODES_HELP)
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

    with _client() as client:
        if follow:
            _watch_job(client, job_id, LogView(sys.stdout))
        items = _run(lambda: client.events(job_id), job_id=job_id)
    for event in history_items(items, job_id):
        typer.echo(event_line(event.type, event.data))


@cli.command()
def cancel(job_id: str) -> None:
    """Cancel a job (a running one stops within one batch)."""
    with _client() as client:
        job = _run(lambda: client.cancel(job_id))
    typer.echo(f"{job['id']} {job['status']}")


@cli.command()
def download(
    job_id: str,
    out: Annotated[Path | None, typer.Option("--out", help="folder (default: ./JOB_ID)")] = None,
) -> None:
    """Download every artifact of a job, each verified against its sha256."""
    with _client() as client:
        paths = _run(lambda: client.download(job_id, out or Path(job_id)))
    for path in paths:
        typer.echo(str(path))


@datasets_cli.command("upload")
def datasets_upload(
    file: Annotated[
        Path,
        typer.Argument(help=".npz, .csv or .zip of class folders", exists=True, dir_okay=False),
    ],
    name: Annotated[str | None, typer.Option(help="default: the file name")] = None,
    label_column: Annotated[str | None, typer.Option(help="CSV: default 'label'")] = None,
    image_size: Annotated[str | None, typer.Option(help="zip: HxW, e.g. 28x28")] = None,
) -> None:
    """Upload a dataset; prints its id (use it as the job spec's "dataset")."""
    fields = {"label_column": label_column or "", "image_size": image_size or ""}
    with _client() as client:
        dataset = _run(lambda: client.upload_dataset(file, name, **fields))
    typer.echo(dataset["id"])


@datasets_cli.command("list")
def datasets_list() -> None:
    """The built-in datasets (and whether this server has them) and your uploads."""
    with _client() as client:
        items = _run(client.datasets)
    for item in items:
        state = "available" if item["available"] else "unavailable"
        shape = "x".join(str(size) for size in item["shape"])
        typer.echo(
            f"{item['id']:<28}  {item['name'][:30]:<30}  {shape:<10}  "
            f"{item['num_classes']:>4} classes  {item['train_size']:>8} train  {state}"
        )


@datasets_cli.command("delete")
def datasets_delete(dataset_id: str) -> None:
    """Delete one of your uploads (refused while unfinished jobs use it)."""
    with _client() as client:
        _run(lambda: client.delete_dataset(dataset_id))
    typer.echo(f"{dataset_id} deleted")


SWEEP_EXIT_CODES_HELP = (
    "Exit status with --wait: 0 the sweep succeeded, 3 it failed, 4 it was cancelled; 1 a "
    "request failed, 2 bad usage, 130 Ctrl-C (stops watching only: the sweep keeps running)."
)
SWEEP_POLL_SECONDS = 2.0


@sweep_cli.command("submit", epilog=SWEEP_EXIT_CODES_HELP)
def sweep_submit(
    sweep_file: Annotated[
        Path, typer.Argument(help="sweep JSON file (see examples/sweep_*.json)", exists=True)
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="then print its progress until it ends")
    ] = False,
) -> None:
    """Submit a sweep; prints its id (and follows it to its end with --wait)."""
    request = _read_json(sweep_file)
    with _client() as client:
        sweep = _run(lambda: client.submit_sweep(request))
        typer.echo(sweep["id"])
        if wait:
            _follow_sweep(client, sweep)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        typer.echo(f"{file} is not valid JSON: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from error


def _follow_sweep(client: Any, sweep: dict[str, Any]) -> None:
    """A line each time the sweep's progress changes, the leaderboard at its end, and the exit
    code of its outcome."""
    import time

    from taas.app.cli.sweep_format import SweepEnd, progress_line, sweep_summary

    shown, sweep_id = "", sweep["id"]
    try:
        while True:
            line = progress_line(sweep)
            if line != shown:
                typer.echo(line)
                shown = line
            if sweep["status"] in SweepEnd:
                break
            time.sleep(SWEEP_POLL_SECONDS)
            sweep = _run(partial(client.sweep, sweep_id))
    except KeyboardInterrupt:
        typer.echo(
            f"stopped watching {sweep['id']}; the sweep keeps running "
            f"(`taas sweep cancel {sweep['id']}` stops it)",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    typer.echo("")
    for text in sweep_summary(sweep):
        typer.echo(text)
    raise typer.Exit(_exit_code(sweep["status"]))


@sweep_cli.command("status")
def sweep_status(
    sweep_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="the sweep as the API returns it")
    ] = False,
) -> None:
    """Show a sweep: objective, trial counts, best trial, and the leaderboard of its trials."""
    from taas.app.cli.sweep_format import sweep_summary

    with _client() as client:
        sweep = _run(lambda: client.sweep(sweep_id))
    if as_json:
        typer.echo(json.dumps(sweep, indent=2))
        return
    for line in sweep_summary(sweep):
        typer.echo(line)


@sweep_cli.command("best")
def sweep_best(
    sweep_id: str,
    download: Annotated[
        Path | None,
        typer.Option(
            "--download",
            help="save the best trial's model files here (each trial of a Pareto front in "
            "its own folder)",
        ),
    ] = None,
) -> None:
    """The best trial (or the Pareto front): its params, objective values and test accuracy."""
    from taas.app.cli.sweep_format import params_text, trial_result

    with _client() as client:
        sweep = _run(lambda: client.sweep(sweep_id))
        chosen = sweep["pareto"] or ([sweep["best"]] if sweep["best"] else [])
        if not chosen:
            typer.echo(f"{sweep_id} has no finished trial within its objective yet", err=True)
            raise typer.Exit(EXIT_FAILED)
        for trial in chosen:
            typer.echo(trial_result(sweep, trial))
            typer.echo(f"  params: {params_text(trial['params'], {})}")
            if trial["test_accuracy"] is not None:
                typer.echo(f"  test accuracy: {trial['test_accuracy']:.4f}")
            if download is not None:
                folder = download / trial["job_id"] if sweep["pareto"] else download
                for path in _run(partial(client.download, trial["job_id"], folder)):
                    typer.echo(f"  {path}")


@sweep_cli.command("list")
def sweep_list(limit: Annotated[int, typer.Option(help="how many")] = 20) -> None:
    """Your sweeps, newest first."""
    from taas.app.cli.format import table
    from taas.app.cli.sweep_format import best_text, objective_text

    with _client() as client:
        sweeps = _run(lambda: client.sweeps(limit))
    if not sweeps:
        typer.echo("no sweeps")
        return
    rows = [
        (
            sweep["id"],
            sweep["status"],
            sweep["name"][:30],
            f"{sum(sweep['counts'].values())}/{sweep['max_trials']}",
            objective_text(sweep),
            best_text(sweep),
        )
        for sweep in sweeps
    ]
    for line in table(("ID", "STATUS", "NAME", "TRIALS", "OBJECTIVE", "BEST"), rows):
        typer.echo(line)


@sweep_cli.command("cancel")
def sweep_cancel(sweep_id: str) -> None:
    """Cancel a sweep: no new trials, its unfinished trials are cancelled."""
    with _client() as client:
        sweep = _run(lambda: client.cancel_sweep(sweep_id))
    typer.echo(f"{sweep['id']} {sweep['status']}")


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
