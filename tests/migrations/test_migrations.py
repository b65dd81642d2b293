"""Alembic alone makes the schema: upgrade, downgrade and upgrade again on both backends, and
the migrated schema must match the ORM models exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from taas.app.core import migrate, models

TABLES = {
    "tenants",
    "workers",
    "api_keys",
    "jobs",
    "attempts",
    "metric_points",
    "metric_steps",
    "stream_events",
    "sweeps",
    "events",
    "artifacts",
    "datasets",
    "dataset_uploads",
    "idempotency_keys",
    "webhook_endpoints",
    "webhook_deliveries",
}
INITIAL_REVISION = "53c64886b8d3"


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_drift(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(
                compare_metadata(MigrationContext.configure(connection), models.Base.metadata)
            )
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    migrate.upgrade(url)
    assert _tables(url) == TABLES
    assert _schema_drift(url) == []
    migrate.downgrade(url)
    assert _tables(url) == set()
    migrate.upgrade(url)
    assert _tables(url) == TABLES


def test_sqlite_upgrades_downgrades_and_matches_models(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'schema.db'}")


@pytest.mark.postgres
def test_postgres_upgrades_downgrades_and_matches_models(postgres_url: str) -> None:
    _round_trip(postgres_url)


def test_jobs_created_before_datasets_existed_get_their_dataset(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, INITIAL_REVISION)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES (1, 'a', '2026-01-01')")
        )
        connection.execute(
            text(
                "INSERT INTO jobs (id, tenant_id, name, status, spec, queue, attempt, "
                "parameter_count, epochs, progress_epoch, progress_fraction, created_at) VALUES "
                "('job_1', 1, 'n', 'succeeded', :spec, 'cpu', 1, 10, 1, 1, 1.0, '2026-01-01')"
            ),
            {"spec": json.dumps({"dataset": "mnist"})},
        )
    engine.dispose()

    migrate.upgrade(url)

    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT dataset FROM jobs")).scalar_one() == "mnist"
    engine.dispose()


def test_keys_made_before_scopes_existed_become_default_admin_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "4f6b2d9e8a17")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES (1, 'a', '2026-01-01')")
        )
        for key_id, prefix in [(1, "0a1b2c3d"), (2, "0a1b2c3d"), (3, "99887766")]:
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, created_at) "
                    "VALUES (:id, 1, :prefix, :hash, '2026-01-01')"
                ),
                {"id": key_id, "prefix": prefix, "hash": f"h{key_id}"},
            )
    engine.dispose()

    migrate.upgrade(url)

    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT public_id, name, scope, expires_at FROM api_keys ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("key_0a1b2c3d", "default", "admin", None),
        ("key_0a1b2c3d_2", "default", "admin", None),  # the old prefixes could collide
        ("key_99887766", "default", "admin", None),
    ]
