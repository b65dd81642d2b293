"""`taas keys`: the operator's way (``--tenant``: straight to the database, no server needed)
and a tenant's way (through the API with the CLI's admin key). Both give keys in the API's
shape, so one table shows either."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from taas.app.auth.scopes import Scope
from taas.app.cli.format import table
from taas.app.cli.session import EXIT_REQUEST_FAILED, api_client, run_request

keys_cli = typer.Typer(help="Manage API keys.", no_args_is_help=True)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``3600s``, ``2w`` as a timedelta; ValueError says the form."""
    match = DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a duration: write a positive number and a unit, "
            "s, m, h, d or w (e.g. 90d)"
        )
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def create_offline(
    tenant: str, name: str, scope: Scope, expires_at: datetime | None
) -> dict[str, Any]:
    """A key for the tenant (created if new), written to the database directly."""
    from taas.app.auth.schemas import CreatedKey, KeyOut
    from taas.app.auth.service import get_or_create_tenant, issue_key
    from taas.app.core.db import session_scope

    with session_scope() as session:
        issued = issue_key(session, get_or_create_tenant(session, tenant), name, scope, expires_at)
        described = KeyOut.of(issued.row).model_dump(mode="json")
    return CreatedKey(**described, key=issued.secret).model_dump(mode="json")


def list_offline(tenant: str) -> list[dict[str, Any]]:
    from taas.app.auth.schemas import KeyOut
    from taas.app.auth.service import find_tenant, list_keys
    from taas.app.core.db import session_scope

    with session_scope() as session:
        rows = list_keys(session, find_tenant(session, tenant).id)
        return [KeyOut.of(row).model_dump(mode="json") for row in rows]


def revoke_offline(tenant: str, key_id: str) -> None:
    from taas.app.auth.service import find_tenant, revoke_key
    from taas.app.core.db import session_scope

    with session_scope() as session:
        revoke_key(session, find_tenant(session, tenant).id, key_id)


def key_table(keys: Sequence[dict[str, Any]]) -> list[str]:
    """ID, name, scope and dates; never the key or its hash (the API does not have them)."""
    rows = [
        (
            key["id"],
            key["name"],
            key["scope"],
            _day(key["created_at"]),
            _day(key["expires_at"]) or "never",
            _day(key["last_used_at"]) or "never",
        )
        for key in keys
    ]
    return table(("ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "LAST USED"), rows)


def _day(value: str | None) -> str:
    # "2026-12-01T09:30:12.345+00:00" -> "2026-12-01 09:30"
    return value[:16].replace("T", " ") if value else ""


def created_note(key: dict[str, Any], tenant: str | None) -> str:
    """What was made, for stderr (stdout holds the key alone, for scripts)."""
    expiry = f", expires {_day(key['expires_at'])} UTC" if key["expires_at"] else ""
    owner = f" for tenant {tenant}" if tenant else ""
    return (
        f"created {key['id']} ({key['name']!r}, scope {key['scope']}{expiry}){owner}; "
        "the key is shown this once and stored only as a hash"
    )


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
    checked_scope = _scope(scope)
    expires_at = _expiry(expires_in)
    if tenant is not None and not tenant.strip():
        raise typer.BadParameter("a tenant needs a name", param_hint="--tenant")
    if tenant is not None:
        key = offline(lambda: create_offline(tenant, name, checked_scope, expires_at))
    else:
        with api_client() as client:
            when = expires_at.isoformat() if expires_at else None
            key = run_request(lambda: client.create_key(name, checked_scope, when))
    typer.echo(created_note(key, tenant), err=True)
    typer.echo(key["key"])


@keys_cli.command("list")
def keys_list(tenant: TenantOption = None) -> None:
    """The keys that work (or expired; not revoked ones): id, name, scope and dates."""
    if tenant is not None:
        keys = offline(lambda: list_offline(tenant))
    else:
        with api_client() as client:
            keys = run_request(client.keys)
    for line in key_table(keys):
        typer.echo(line)


@keys_cli.command("revoke")
def keys_revoke(key_id: str, tenant: TenantOption = None) -> None:
    """Revoke a key (`key_...`, from `taas keys list`): refused from its next request on."""
    if tenant is not None:
        offline(lambda: revoke_offline(tenant, key_id))
    else:
        with api_client() as client:
            run_request(lambda: client.revoke_key(key_id))
    typer.echo(f"{key_id} revoked")


def _scope(value: str) -> Scope:
    from taas.app.auth.scopes import SCOPES

    if value not in SCOPES:
        raise typer.BadParameter(
            f"{value!r} is not a scope: one of {', '.join(SCOPES)}", param_hint="--scope"
        )
    return value


def _expiry(expires_in: str | None) -> datetime | None:
    if expires_in is None:
        return None
    try:
        return datetime.now(UTC) + parse_duration(expires_in)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--expires-in") from None
    except OverflowError:  # past year 9999
        message = f"{expires_in} reaches past the year 9999; leave it out: a key never expires"
        raise typer.BadParameter(message, param_hint="--expires-in") from None


def offline(action: Any) -> Any:
    """Run an operator action on the database; a missing tenant or key is a sentence, exit 1."""
    from taas.app.core.errors import DomainError

    try:
        return action()
    except DomainError as error:
        typer.echo(error.message, err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED) from None
