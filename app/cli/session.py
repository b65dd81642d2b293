"""What every command that talks to the API shares: the client made from the settings and the
saved key, a request whose failure becomes one sentence, reading a JSON file, the exit codes."""

from __future__ import annotations

import json
import sys
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
    from taas.errors import ApiError, TaasError

    try:
        return action()
    except (ApiError, httpx.HTTPError, SSEError, StreamLost) as error:
        settings = get_settings()
        key_origin = "TAAS_API_KEY" if settings.api_key else str(key_file())
        target = Target(settings.api_url, key_origin, spec=spec, job_id=job_id)
        typer.echo(explain(error, target), err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None
    except TaasError as error:  # the client refused before asking (an empty id, ...)
        typer.echo(str(error), err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None


def exit_code_for(status: str) -> int:
    """The exit code of a job's or a sweep's final status."""
    return {"succeeded": EXIT_SUCCEEDED, "cancelled": EXIT_CANCELLED}.get(status, EXIT_FAILED)


def read_json(source: str) -> Any:
    """A JSON document given as a file's path, ``-`` (standard input) or inline (``{...}``)."""
    text, where = _json_text(source)
    try:
        return json.loads(text)
    except ValueError as error:
        typer.echo(f"{where} is not valid JSON: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from error


def _json_text(source: str) -> tuple[str, str]:
    if source == "-":
        text = sys.stdin.read()
        if not text.strip():
            typer.echo(
                "standard input is empty: pipe the JSON in (cat spec.json | taas ...)", err=True
            )
            raise typer.Exit(EXIT_USAGE)
        return text, "standard input"
    if source.lstrip().startswith(("{", "[")):
        return source, "the JSON given"
    path = Path(source)
    try:
        return path.read_text(), source
    except FileNotFoundError:
        message = f"{source}: no such file (give a JSON file, - for standard input, or {{...}})"
    except IsADirectoryError:
        message = f"{source} is a folder, not a JSON file"
    except UnicodeDecodeError:
        message = f"{source} is not a text file"
    except OSError as error:
        message = f"cannot read {source}: {error.strerror}"
    typer.echo(message, err=True)
    raise typer.Exit(EXIT_USAGE)
