"""Public key routes (HTTP only; logic in service.py). All need an admin key, and act on the
key's own tenant only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status

from taas.app.auth import service
from taas.app.auth.dependencies import AdminTenant
from taas.app.auth.schemas import CreatedKey, KeyIn, KeyList, KeyOut
from taas.app.core.db import SessionDep

router = APIRouter(prefix="/v1/keys", tags=["keys"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such key for this tenant"}}
KeyId = Annotated[str, Path(max_length=100, description="the key's public id, `key_...`")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedKey,
    responses={
        422: {
            "description": "a field is wrong, or expires_at is not in the future (a fact of "
            "the moment the request arrives, which no schema can say)"
        }
    },
)
def create_key(request: KeyIn, session: SessionDep, tenant: AdminTenant) -> CreatedKey:
    issued = service.issue_key(session, tenant, request.name, request.scope, request.expires_at)
    session.commit()
    return CreatedKey(**KeyOut.of(issued.row).model_dump(), key=issued.secret)


@router.get("", response_model=KeyList)
def list_keys(session: SessionDep, tenant: AdminTenant) -> KeyList:
    return KeyList(items=[KeyOut.of(row) for row in service.list_keys(session, tenant.id)])


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def revoke_key(key_id: KeyId, session: SessionDep, tenant: AdminTenant) -> Response:
    service.revoke_key(session, tenant.id, key_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
