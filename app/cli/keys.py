"""`taas keys`: the operator's way (``--tenant``: straight to the database, no server needed)
and a tenant's way (through the API with the CLI's admin key). Both give keys in the API's
shape, so one table shows either."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from taas.app.auth.scopes import Scope
from taas.app.cli.format import table

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
