"""Schema migrations: Alembic alone makes the schema. The scripts ship inside the package."""

from __future__ import annotations

from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import get_settings
from app.db import ensure_sqlite_folder


def script_location() -> str:
    """Installed, the scripts ship as ``app.migrations``; imported from a source checkout (as the
    test suite does), ``app`` is the folder and the scripts are its sibling ``migrations/``."""
    if find_spec("app.migrations") is not None:
        return str(files("app.migrations"))
    return str(Path(__file__).resolve().parent.parent / "migrations")


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location())
    config.set_main_option("sqlalchemy.url", database_url or get_settings().resolved_database_url)
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    ensure_sqlite_folder(database_url or get_settings().resolved_database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
