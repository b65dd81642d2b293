"""Who is calling and what they may do: an API key's tenant (public routes) or a worker
(internal routes).

Every public route depends on CurrentTenant (the key routes on AdminTenant), so one place
authenticates the key, counts it against its rate limit and checks its scope: GET/HEAD need
``read``, every other method ``write``, the key routes ``admin``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taas.app.auth.models import ApiKey, Tenant
from taas.app.auth.scopes import Scope, grants, scope_for_method
from taas.app.auth.service import (
    LAST_USED_RESOLUTION,
    find_key,
    note_key_use,
    refusal,
    worker_token_matches,
)
from taas.app.core.config import Settings, get_settings
from taas.app.core.db import SessionDep, session_scope, utcnow
from taas.app.core.rate_limits import STATE_KEY, KeyRateLimiter
from taas.app.observability import request_context

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


def authenticated_key(request: Request, session: SessionDep, credentials: Credentials) -> ApiKey:
    """The caller's key, valid now (read from the database on every request, so a revoke or an
    expiry holds at once in every API process), counted against its rate limit."""
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    now = utcnow()
    api_key = find_key(session, credentials.credentials)
    reason = refusal(api_key, now)
    if reason is not None or api_key is None:
        raise _unauthorized(reason or "invalid API key")
    request_context.bind(tenant=api_key.tenant.name)  # every log line of this request says whose
    _count_request(request, api_key.public_id)
    if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_RESOLUTION:
        # Its own short transaction: the request's may last as long as an upload, and must not
        # hold the key's row locked for that long.
        with session_scope() as own:
            note_key_use(own, api_key.id, now)
    return api_key


def _count_request(request: Request, key_id: str) -> None:
    limiter: KeyRateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    decision = limiter.check(key_id) if limiter is not None else None
    if decision is None:  # limits off, or their storage unreachable (the limiter logged it)
        return
    setattr(request.state, STATE_KEY, decision.headers())  # RateLimitHeaders adds them
    if not decision.allowed:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"API key {key_id} is over its rate limit ({decision.exhausted()}); "
            f"retry in {decision.retry_after} s",
            headers={"Retry-After": str(decision.retry_after)},
        )


AuthenticatedKey = Annotated[ApiKey, Depends(authenticated_key)]


def _require(request: Request, api_key: ApiKey, needed: Scope) -> Tenant:
    if not grants(api_key.scope, needed):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this API key has scope {api_key.scope}; "
            f"{request.method} {request.url.path} needs {needed}",
        )
    return api_key.tenant


def current_tenant(request: Request, api_key: AuthenticatedKey) -> Tenant:
    """The tenant of a key whose scope allows this method: read for GET/HEAD, else write."""
    return _require(request, api_key, scope_for_method(request.method))


def admin_tenant(request: Request, api_key: AuthenticatedKey) -> Tenant:
    """The tenant of an admin key: managing keys needs admin, whatever the method."""
    return _require(request, api_key, "admin")


def require_worker(settings: SettingsDep, credentials: WorkerCredentials) -> None:
    if credentials is None or not worker_token_matches(
        credentials.credentials, settings.worker_token
    ):
        raise _unauthorized("missing or invalid worker token")


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
AdminTenant = Annotated[Tenant, Depends(admin_tenant)]
WorkerAuth = Depends(require_worker)
