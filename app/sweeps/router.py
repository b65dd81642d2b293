"""Public sweep routes (HTTP only; logic in service.py and controller.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from taas.app.artifacts.dependencies import StorageDep
from taas.app.auth.dependencies import CurrentTenant, SettingsDep
from taas.app.core.db import SessionDep
from taas.app.core.openapi import error_responses
from taas.app.scheduling.dispatch import dispatch
from taas.app.sweeps import service
from taas.app.sweeps.controller import advance_sweep
from taas.app.sweeps.models import Sweep
from taas.app.sweeps.schemas import SweepIn, SweepList, SweepOut

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
NO_SUCH_SWEEP = {404: "no such sweep for this tenant"}
NOT_FOUND = error_responses(NO_SUCH_SWEEP)
SweepId = Annotated[str, Path(max_length=200, description="the sweep id, `swp_...`")]


def valid_owned_sweep(sweep_id: SweepId, session: SessionDep, tenant: CurrentTenant) -> Sweep:
    return service.get_owned_sweep(session, tenant, sweep_id)


OwnedSweep = Annotated[Sweep, Depends(valid_owned_sweep)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepOut,
    responses=error_responses(
        {
            422: "the request does not validate, or its search space or base spec is wrong "
            "(an unknown parameter path, a value a job spec refuses); each item names the field"
        }
    ),
)
def submit_sweep(
    request: SweepIn, session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> SweepOut:
    sweep = service.create_sweep(session, tenant, request, settings.auto_device, settings.limits)
    session.commit()
    advance_sweep(session, sweep.id, settings)
    session.commit()
    dispatch(settings)  # after the commit, as for any job
    return service.describe_sweep(session, sweep)


@router.get("", response_model=SweepList)
def list_sweeps(
    session: SessionDep, tenant: CurrentTenant, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> SweepList:
    sweeps = service.list_sweeps(session, tenant, limit)
    return SweepList(items=[service.describe_sweep(session, sweep) for sweep in sweeps])


@router.get("/{sweep_id}", response_model=SweepOut, responses=NOT_FOUND)
def get_sweep(sweep: OwnedSweep, session: SessionDep) -> SweepOut:
    return service.describe_sweep(session, sweep)


@router.post(
    "/{sweep_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepOut,
    responses=error_responses({**NO_SUCH_SWEEP, 409: "the sweep already ended"}),
)
def cancel_sweep(sweep: OwnedSweep, session: SessionDep, settings: SettingsDep) -> SweepOut:
    service.cancel_sweep(session, sweep)
    session.commit()
    dispatch(settings)
    return service.describe_sweep(session, sweep)


@router.delete(
    "/{sweep_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses({**NO_SUCH_SWEEP, 409: "the sweep or a trial of it has not ended"}),
)
def delete_sweep(sweep: OwnedSweep, session: SessionDep, storage: StorageDep) -> Response:
    job_ids = service.delete_sweep(session, sweep)
    session.commit()
    for job_id in job_ids:
        storage.delete_job_files(job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
