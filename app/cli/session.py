"""What every command that talks to the API shares: the client made from the settings and the
saved key, a request whose failure becomes one sentence, reading a JSON file, the exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from taas.app.core.config import get_settings

EXIT_SUCCEEDED = 0
EXIT_REQUEST_FAILED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_CANCELLED = 4
EXIT_INTERRUPTED = 130


def key_file() -> Path:
    return get_settings().home / "api_key"


def api_client() -> Any:
    """A ``taas.Client`` for TAAS_API_URL with TAAS_API_KEY, or the key `taas serve` saved."""
    from taas.client import Client

    settings = get_settings()
    key = settings.api_key
    if not key and key_file().exists():
        key = key_file().read_text().strip()
    if not key:
        typer.echo(
            f"no API key: set TAAS_API_KEY or run `taas serve` (writes {key_file()})", err=True
        )
        raise typer.Exit(EXIT_USAGE)
    return Client(settings.api_url, key)


def run_request(action: Any, spec: dict[str, Any] | None = None, job_id: str | None = None) -> Any:
    """Run a request; a failure is said in a sentence (errors.py) and exits 1."""
    import httpx
    from httpx_sse import SSEError

    from taas.app.cli.errors import Target, explain
    from taas.app.cli.job_feed import StreamLost
    from taas.errors import ApiError

    try:
        return action()
    except (ApiError, httpx.HTTPError, SSEError, StreamLost) as error:
        settings = get_settings()
        key_origin = "TAAS_API_KEY" if settings.api_key else str(key_file())
        target = Target(settings.api_url, key_origin, spec=spec, job_id=job_id)
        typer.echo(explain(error, target), err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None


def exit_code_for(status: str) -> int:
    """The exit code of a job's or a sweep's final status."""
    return {"succeeded": EXIT_SUCCEEDED, "cancelled": EXIT_CANCELLED}.get(status, EXIT_FAILED)


def read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        typer.echo(f"{file} is not valid JSON: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from error
