"""The route workers call to say they are alive (worker token); it may start jobs for them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from taas.app.auth.dependencies import SettingsDep, WorkerAuth
from taas.app.core.db import SessionDep
from taas.app.scheduling.dispatch import dispatch
from taas.app.scheduling.presence import forget_worker, note_presence
from taas.app.scheduling.schemas import PresenceIn, PresenceOut

router = APIRouter(prefix="/internal/v1/workers", tags=["internal"], dependencies=[WorkerAuth])
WorkerName = Annotated[str, Path(min_length=1, max_length=200)]


@router.put("/{name}", response_model=PresenceOut)
def worker_alive(
    name: WorkerName, body: PresenceIn, session: SessionDep, settings: SettingsDep
) -> PresenceOut:
    """Called every presence period by each worker. Jobs are dispatched after each call: a new
    worker's slots (or one heard from again) get work at once."""
    note_presence(session, name, body)
    session.commit()
    dispatch(settings)
    return PresenceOut(presence_seconds=settings.presence_seconds)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def worker_stopping(name: WorkerName, session: SessionDep) -> Response:
    forget_worker(session, name)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
