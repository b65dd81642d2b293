"""The commands that run the service: `taas serve` (everything in one command), `taas api`,
`taas worker` and `taas migrate` (the production pieces)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from taas.app.core.config import get_settings
from taas.app.core.wording import counted
from taas.worker.resources.devices import MAX_JOBS_PER_GPU


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8000,
) -> None:
    """Run everything here: migrations, the API and a local worker (SQLite, no servers).

    Logs go to files under TAAS_HOME/logs; the console shows where things are, and warnings and
    errors."""
    from taas.app.cli.serve import serve as run_embedded

    run_embedded(host, port)


def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes", min=1)] = 1,
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
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )


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
        concurrency = processes_for_gpus(gpus, concurrency, jobs_per_gpu)
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


def processes_for_gpus(gpus: str, concurrency: int, jobs_per_gpu: int) -> int:
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
            f"{concurrency} processes for {counted(len(listed), 'GPU')} with "
            f"{counted(jobs_per_gpu, 'job')} each: "
            f"leave --concurrency out (it is {processes})",
            param_hint="--concurrency",
        )
    os.environ[GPUS_ENV] = ",".join(listed)
    os.environ[JOBS_PER_GPU_ENV] = str(jobs_per_gpu)
    if processes == 1:
        pin_gpu(0)  # the solo pool trains in this process
    return processes


def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    from taas.app.core import migrate as migrations

    migrations.upgrade()
    typer.echo("database is at the latest schema")
