"""The CLI on a database it cannot use: one line saying what to do, never a driver traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.processes import base_env, taas_command


def taas(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        taas_command(*args),
        env=base_env(home, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_creates_a_fresh_home_for_its_sqlite_file(tmp_path: Path) -> None:
    home = tmp_path / "not" / "there" / "yet"

    result = taas(home, "migrate")

    assert result.returncode == 0, result.stderr
    assert (home / "taas.db").is_file()
    assert taas(home, "keys", "create", "--tenant", "acme").stdout.startswith("taas_")


def test_a_database_without_its_schema_says_to_migrate(tmp_path: Path) -> None:
    result = taas(tmp_path / "home", "keys", "create", "--tenant", "acme")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("database error (sqlite:///")
    assert "no such table" in result.stderr
    assert "run `taas migrate`" in result.stderr


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://taas:hunter2@127.0.0.1:1/taas"  # nothing listens on port 1

    result = taas(tmp_path / "home", "migrate", TAAS_DATABASE_URL=url)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "postgresql+psycopg://taas:***@127.0.0.1:1/taas" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Connection refused" in result.stderr
