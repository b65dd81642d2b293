"""Recording artifacts that a worker uploaded."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.artifacts.models import Artifact
from app.artifacts.storage import StoredObject
from app.errors import InvalidInput

ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
ARTIFACT_KINDS = ("model", "metadata", "checkpoint", "export", "log")


def check_artifact_name(name: str) -> str:
    """Artifact names are plain file names: no separators, no '..', nothing hidden."""
    if not ARTIFACT_NAME.match(name) or ".." in name:
        raise InvalidInput(
            ["path", "name"],
            f"artifact name {name[:100]!r} is not allowed: use letters, digits, '.', '_', '-'",
        )
    return name


def check_sha256(value: str | None) -> str:
    if value is None or not SHA256_HEX.match(value):
        raise InvalidInput(["header", "x-content-sha256"], "send the lowercase hex sha256")
    return value


def record_artifact(
    session: Session,
    job_id: str,
    attempt: int,
    name: str,
    kind: str,
    stored: StoredObject,
) -> str | None:
    """Store the row for an uploaded file. Returns the storage key of the file it replaced, which
    the caller deletes only after the commit (so a failed commit never loses the old file)."""
    existing = session.scalar(
        select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name)
    )
    replaced = None
    if existing is not None:
        replaced = existing.storage_key
        session.delete(existing)
        session.flush()
    artifact = Artifact(
        job_id=job_id,
        attempt=attempt,
        name=name,
        kind=kind,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        storage_key=stored.key,
    )
    session.add(artifact)
    session.flush()
    return replaced
