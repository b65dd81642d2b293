"""`taas tenants set`: the operator gives one tenant its own cap on running jobs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from taas.app.auth.models import Tenant
from taas.app.cli.main import cli
from taas.app.core.db import session_scope


def taas(*arguments: str) -> tuple[int, str]:
    """Exit code and output, the words of a usage error's box joined back into one line."""
    result = CliRunner().invoke(cli, list(arguments))
    return result.exit_code, " ".join(result.output.replace("│", " ").split()) + "\n"


def cap_of(name: str) -> int | None:
    with session_scope() as session:
        return session.query(Tenant).filter(Tenant.name == name).one().max_running


def test_the_operator_sets_and_clears_a_tenants_running_cap(taas_home: Path) -> None:
    assert taas("keys", "create", "--tenant", "acme")[0] == 0
    assert taas("tenants", "set", "acme", "--max-running", "3") == (0, "acme: max_running 3\n")
    assert cap_of("acme") == 3
    assert taas("tenants", "set", "acme", "--max-running", "none")[0] == 0
    assert cap_of("acme") is None


def test_a_bad_cap_or_an_unknown_tenant_is_said(taas_home: Path) -> None:
    assert taas("keys", "create", "--tenant", "acme")[0] == 0
    code, output = taas("tenants", "set", "acme", "--max-running", "0")
    assert code == 2
    assert "is not a number of jobs from 1 to 100000" in output
    code, output = taas("tenants", "set", "nobody", "--max-running", "2")
    assert code == 1
    assert "tenant 'nobody' not found" in output
