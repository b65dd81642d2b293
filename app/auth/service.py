"""API keys: ``taas_<prefix>_<secret>``; only the SHA-256 of the whole key is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from taas.app.auth.models import ApiKey, Tenant
from taas.app.auth.scopes import Scope
from taas.app.core.db import utcnow
from taas.app.core.errors import InvalidInput, NotFound

KEY_PREFIX = "taas"
# last_used_at is written at most once a minute per key: a write per request would double the
# database work of every GET; "used within the last minute" is as precise as anyone needs.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    """A new key's row and the key itself, which is never stored and never shown again."""

    row: ApiKey
    secret: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def issue_key(
    session: Session,
    tenant: Tenant,
    name: str,
    scope: Scope,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Create a key for the tenant; the returned secret is the only time it is visible."""
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput(["body", "expires_at"], f"expires_at {expires_at} is in the past")
    prefix = secrets.token_hex(6)  # 48 bits: public ids do not collide in practice
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        tenant_id=tenant.id,
        public_id=f"key_{prefix}",
        name=name,
        scope=scope,
        prefix=prefix,
        key_hash=hash_key(key),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return IssuedKey(row, key)


def create_api_key(
    session: Session,
    tenant_name: str,
    name: str = "default",
    scope: Scope = "admin",
    expires_at: datetime | None = None,
) -> str:
    """The operator's way in: a key for the tenant (created if new), admin unless told, so the
    tenant's first key can make the others."""
    tenant = get_or_create_tenant(session, tenant_name)
    return issue_key(session, tenant, name, scope, expires_at).secret


def find_key(session: Session, key: str) -> ApiKey | None:
    """The key's row (revoked and expired ones too), or None. Lookup is by hash, so timing
    leaks nothing of the key."""
    if not key.startswith(f"{KEY_PREFIX}_") or len(key) > 200:
        return None
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))


def refusal(api_key: ApiKey | None, now: datetime) -> str | None:
    """Why this key may not be used now, or None when it may. Read from the database on every
    request: a revoke or an expiry holds in every API process at the next request."""
    if api_key is None:
        return "invalid API key"
    if api_key.revoked_at is not None:
        return f"API key {api_key.public_id} was revoked"
    if api_key.expires_at is not None and api_key.expires_at <= now:
        return f"API key {api_key.public_id} expired at {api_key.expires_at.isoformat()}"
    return None


def note_key_use(session: Session, key_id: int, now: datetime) -> None:
    """Record that the key was used, unless that was recorded less than a minute ago. A
    conditional UPDATE: concurrent requests in several processes write it once between them."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION))
        .values(last_used_at=now)
    )


def list_keys(session: Session, tenant_id: int) -> list[ApiKey]:
    """The tenant's keys that are not revoked (expired ones too: they say when they expired)."""
    query = (
        select(ApiKey)
        .where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    return list(session.scalars(query))


def revoke_key(session: Session, tenant_id: int, public_id: str) -> ApiKey:
    """Revoke one of the tenant's keys; another tenant's key (or one already revoked) is not
    found, so nobody learns which ids exist elsewhere."""
    api_key = session.scalar(
        select(ApiKey).where(
            ApiKey.tenant_id == tenant_id,
            ApiKey.public_id == public_id,
            ApiKey.revoked_at.is_(None),
        )
    )
    if api_key is None:
        raise NotFound(f"API key {public_id[:100]!r} not found")
    api_key.revoked_at = utcnow()
    session.flush()
    return api_key


def find_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"tenant {name[:100]!r} not found")
    return tenant


def worker_token_matches(presented: str, expected: str | None) -> bool:
    if not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
