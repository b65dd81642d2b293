"""Idempotency-Key on POST /v1/jobs, with Stripe's semantics: the same key and body return the
job the first request created; the same key with another body is 409; keys expire after
``idempotency_ttl_seconds``. A client that lost the answer to a submit can retry it safely."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core.db import utcnow
from taas.app.core.errors import Conflict, InvalidInput
from taas.app.jobs.models import IdempotencyKey, Job
from taas.app.spec import JobSpec

MAX_KEY_LENGTH = 255


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            ["header", "idempotency-key"],
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
        )
    return key


def request_hash(spec: JobSpec) -> str:
    """What the client asked for, independent of key order and whitespace."""
    asked = spec.model_dump(mode="json", exclude_unset=True)
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


def replayed_job(
    session: Session, tenant: Tenant, key: str, digest: str, ttl_seconds: float
) -> Job | None:
    """The job an earlier request with this key created, or None for a new (or expired) key.
    Raises Conflict when the key was used for a different body."""
    _forget_expired(session, tenant, ttl_seconds)
    record = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant.id, IdempotencyKey.key == key
        )
    )
    if record is None:
        return None
    if record.request_hash != digest:
        raise Conflict(
            f"Idempotency-Key {key[:64]!r} was used for a different request body; "
            "use a new key for a new job"
        )
    return session.get(Job, record.job_id)


def remember(session: Session, tenant: Tenant, key: str, digest: str, job: Job) -> None:
    session.add(IdempotencyKey(tenant_id=tenant.id, key=key, request_hash=digest, job_id=job.id))
    session.flush()


def _forget_expired(session: Session, tenant: Tenant, ttl_seconds: float) -> None:
    cutoff = utcnow() - timedelta(seconds=ttl_seconds)
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant.id, IdempotencyKey.created_at < cutoff
        )
    )
