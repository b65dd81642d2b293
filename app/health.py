from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import text

from app.broker import broker_answers
from app.db import get_engine

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    database: str | None = None
    broker: str | None = None


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


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(response: Response) -> Health:
    """Ready when the database and the broker both answer; says which one is down otherwise."""
    database, broker = _database_answers(), broker_answers()
    if not (database and broker):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if database and broker else "unavailable",
        database="ok" if database else "down",
        broker="ok" if broker else "down",
    )
