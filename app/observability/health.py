from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import text

from taas.app.auth.dependencies import SettingsDep
from taas.app.core.db import get_engine
from taas.app.core.storage_space import api_locations, measure
from taas.app.scheduling.broker import broker_answers
from taas.app.storage.factory import store_for
from taas.app.storage.health import storage_problem

router = APIRouter(tags=["health"])


class StorageOut(BaseModel):
    name: str
    status: str  # ok | low
    free_bytes: int
    min_free_bytes: int


class Health(BaseModel):
    status: str  # ok | degraded (storage low) | unavailable (database or broker down)
    database: str | None = None
    broker: str | None = None


class Readiness(Health):
    storage: str  # ok | low (a location below TAAS_MIN_FREE_BYTES) | down (object storage)
    storage_locations: list[StorageOut]
    object_storage: str | None = None  # ok | down; None where files are on the filesystem
    object_storage_problem: str | None = None


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


def _database_answers() -> bool:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(response: Response, settings: SettingsDep) -> Readiness:
    """Ready (200) when the database and the broker both answer, 503 naming which is down
    otherwise. Storage below TAAS_MIN_FREE_BYTES, or object storage that does not answer, is
    reported as ``degraded``, still 200: every API process shares that storage, and a load
    balancer that took them all out of rotation would stop the workers from finishing (or
    giving back) the jobs they hold."""
    database, broker = _database_answers(), broker_answers()
    locations = measure(api_locations(settings), settings.min_free_bytes)
    store = store_for(settings)
    object_problem = storage_problem(store)
    storage = not any(location.low for location in locations) and object_problem is None
    if not (database and broker):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        overall = "unavailable"
    else:
        overall = "ok" if storage else "degraded"
    return Readiness(
        status=overall,
        database="ok" if database else "down",
        broker="ok" if broker else "down",
        storage="ok" if storage else ("down" if object_problem else "low"),
        object_storage=("down" if object_problem else "ok") if store.direct else None,
        object_storage_problem=object_problem,
        storage_locations=[
            StorageOut(
                name=location.name,
                status="low" if location.low else "ok",
                free_bytes=location.free_bytes,
                min_free_bytes=location.min_free_bytes,
            )
            for location in locations
        ],
    )
