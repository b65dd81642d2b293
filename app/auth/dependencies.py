"""Who is calling: a tenant (public routes) or a worker (internal routes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.models import Tenant
from app.auth.service import tenant_for_key, worker_token_matches
from app.config import Settings, get_settings
from app.db import SessionDep

api_key_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="A tenant's API key: `Authorization: Bearer taas_...` (public `/v1` routes)",
)
worker_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="WorkerToken",
    description="The workers' shared token, TAAS_WORKER_TOKEN (`/internal` routes only)",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)]
WorkerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(worker_scheme)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


def current_tenant(session: SessionDep, credentials: Credentials) -> Tenant:
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    tenant = tenant_for_key(session, credentials.credentials)
    if tenant is None:
        raise _unauthorized("invalid or revoked API key")
    return tenant


def require_worker(settings: SettingsDep, credentials: WorkerCredentials) -> None:
    if credentials is None or not worker_token_matches(
        credentials.credentials, settings.worker_token
    ):
        raise _unauthorized("missing or invalid worker token")


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
WorkerAuth = Depends(require_worker)
