"""Database engine, declarative base and sessions.

The API commits in one place (the request, or the worker-facing service call); services only flush.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from taas.app.core.config import get_settings

logger = logging.getLogger(__name__)

# Deterministic constraint names, so Alembic can alter and drop them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# What the database raises while it cannot be reached (a restart, a network cut) or is busy
# (SQLite's "database is locked"): the same request succeeds once it is back.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError)


def describe_database_error(error: BaseException) -> str:
    """One line for the log: the driver's first line, never a URL with a password."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines() or [type(original).__name__]
    return f"{type(original).__name__}: {lines[0][:300]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a write is in flight; busy_timeout makes writers wait, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ensure_sqlite_folder(url: str) -> None:
    """SQLite creates its file but not the folder it goes in (a fresh TAAS_HOME)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().resolved_database_url)


@lru_cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def open_session() -> Session:
    """A new session, for work that manages its own (a stream reading now and then)."""
    return _session_factory()()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work outside a request: commit on success, roll back on error."""
    session = _session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        _roll_back(session)
        raise
    finally:
        session.close()


def get_session() -> Iterator[Session]:
    """Request-scoped session; the route commits, anything left uncommitted is rolled back."""
    session = _session_factory()()
    try:
        yield session
    finally:
        _roll_back(session)
        session.close()


def _roll_back(session: Session) -> None:
    """Roll back what is left uncommitted. When the connection itself is gone (the database
    restarted), so is the transaction: there is nothing to undo, and raising here, after the
    response has started or over the error that brought us here, would only hide what happened."""
    try:
        session.rollback()
    except DATABASE_UNAVAILABLE as error:
        logger.info("rollback skipped, the connection is gone: %s", describe_database_error(error))


SessionDep = Annotated[Session, Depends(get_session)]


def reset_engine_cache() -> None:
    """Forget the cached engine (tests and `taas serve` change settings at run time)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()
