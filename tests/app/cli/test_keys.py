"""`taas keys` for the operator (--tenant: the database, no server) and the local user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from taas.app.cli.keys import parse_duration
from taas.app.cli.main import cli
from taas.app.cli.serve import ensure_api_key


def taas(*arguments: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(arguments))
    return result.exit_code, result.stdout, result.stderr


def test_the_operator_creates_lists_and_revokes_keys_without_a_server(
    taas_home: Path, api: TestClient
) -> None:
    code, key, said = taas(
        "keys", "create", "--tenant", "acme", "--name", "ci", "--scope", "read",
        "--expires-in", "30d",
    )  # fmt: skip
    assert code == 0, said
    key = key.strip()
    assert key.startswith("taas_")
    assert "scope read" in said
    assert "shown this once" in said
    headers = {"Authorization": f"Bearer {key}"}
    assert api.get("/v1/jobs", headers=headers).status_code == 200
    assert api.post("/v1/jobs", json={}, headers=headers).status_code == 403

    code, listed, _ = taas("keys", "list", "--tenant", "acme")
    assert code == 0
    [header, row] = listed.splitlines()
    assert header.split() == ["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "LAST", "USED"]
    public_id = row.split()[0]
    assert key.startswith(f"taas_{public_id.removeprefix('key_')}_")
    assert row.split()[1:3] == ["ci", "read"]
    in_30_days = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
    assert in_30_days in row
    assert key.split("_", 2)[2] not in listed

    assert taas("keys", "revoke", public_id, "--tenant", "acme")[:2] == (
        0,
        f"{public_id} revoked\n",
    )
    assert api.get("/v1/jobs", headers=headers).status_code == 401
    assert taas("keys", "list", "--tenant", "acme")[1].splitlines()[1:] == []


def test_keys_made_by_the_cli_by_default_and_by_taas_serve_are_admin(
    taas_home: Path, api: TestClient
) -> None:
    code, key, _ = taas("keys", "create", "--tenant", "acme")
    served = ensure_api_key(taas_home)
    assert code == 0
    assert served is not None

    for made in (key.strip(), served):
        answer = api.get("/v1/keys", headers={"Authorization": f"Bearer {made}"})
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scope", "root"], "'root' is not a scope: one of read, write, admin"),
        (["--expires-in", "soon"], "'soon' is not a duration"),
        (["--expires-in", "0d"], "'0d' is not a duration"),
        (["--expires-in", "999999999d"], "reaches past the year 9999"),
        (["--tenant", " "], "a tenant needs a name"),
    ],
)
def test_bad_create_options_are_usage_errors_naming_the_option(
    taas_home: Path, arguments: list[str], message: str
) -> None:
    code, _, said = taas("keys", "create", "--tenant", "acme", *arguments)

    assert code == 2
    assert message in " ".join(said.split())


def test_an_unknown_tenant_or_key_is_one_sentence(taas_home: Path) -> None:
    assert taas("keys", "list", "--tenant", "nobody")[::2] == (1, "tenant 'nobody' not found\n")
    taas("keys", "create", "--tenant", "acme")
    code, _, said = taas("keys", "revoke", "key_nope", "--tenant", "acme")
    assert (code, said) == (1, "API key 'key_nope' not found\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("12h", 43200), ("90d", 7776000), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
