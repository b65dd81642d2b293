"""`taas sweep`: submit a sweep, follow it, read its leaderboard, download its best model."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from taas.app.cli.session import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    api_client,
    exit_code_for,
    read_json,
    run_request,
)

sweep_cli = typer.Typer(
    help="Search hyperparameters: submit a sweep, follow it, read its leaderboard.",
    no_args_is_help=True,
)

SWEEP_EXIT_CODES_HELP = (
    "Exit status with --wait: 0 the sweep succeeded, 3 it failed, 4 it was cancelled; 1 a "
    "request failed, 2 bad usage, 130 Ctrl-C (stops watching only: the sweep keeps running)."
)
SWEEP_POLL_SECONDS = 2.0


@sweep_cli.command("submit", epilog=SWEEP_EXIT_CODES_HELP)
def sweep_submit(
    sweep_file: Annotated[
        str,
        typer.Argument(
            help="the sweep: a JSON file (see examples/sweep_*.json), - for standard input, "
            "or inline JSON",
            metavar="SWEEP",
        ),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="then print its progress until it ends")
    ] = False,
) -> None:
    """Submit a sweep; prints its id (and follows it to its end with --wait)."""
    request = read_json(sweep_file)
    with api_client() as client:
        sweep = run_request(lambda: client.submit_sweep(request))
        typer.echo(sweep["id"])
        if wait:
            _follow_sweep(client, sweep)


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
            sweep = run_request(partial(client.sweep, sweep_id))
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
    raise typer.Exit(exit_code_for(sweep["status"]))


@sweep_cli.command("status")
def sweep_status(
    sweep_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="the sweep as the API returns it")
    ] = False,
) -> None:
    """Show a sweep: objective, trial counts, best trial, and the leaderboard of its trials."""
    from taas.app.cli.sweep_format import sweep_summary

    with api_client() as client:
        sweep = run_request(lambda: client.sweep(sweep_id))
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

    with api_client() as client:
        sweep = run_request(lambda: client.sweep(sweep_id))
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
                for path in run_request(partial(client.download, trial["job_id"], folder)):
                    typer.echo(f"  {path}")


@sweep_cli.command("list")
def sweep_list(limit: Annotated[int, typer.Option(help="how many")] = 20) -> None:
    """Your sweeps, newest first."""
    from taas.app.cli.format import table
    from taas.app.cli.sweep_format import best_text, objective_text

    with api_client() as client:
        sweeps = run_request(lambda: client.sweeps(limit))
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
    with api_client() as client:
        sweep = run_request(lambda: client.cancel_sweep(sweep_id))
    typer.echo(f"{sweep['id']} {sweep['status']}")
