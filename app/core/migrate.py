"""Schema migrations: Alembic alone makes the schema. The scripts ship inside the package."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config

from taas.app.core.config import get_settings
from taas.app.core.db import ensure_sqlite_folder


def script_location() -> str:
    """The scripts live in the repository's migrations/ folder and ship as
    ``taas.app.migrations`` (see pyproject.toml)."""
    return str(files("taas.app.migrations"))


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
