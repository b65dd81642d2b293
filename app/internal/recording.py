"""Recording an uploaded artifact, whichever way its bytes reached the store."""

from __future__ import annotations

from sqlalchemy.orm import Session

from taas.app.artifacts.service import prune_checkpoints, record_artifact
from taas.app.artifacts.storage import StoredObject
from taas.app.core.config import Settings
from taas.app.internal import service
from taas.app.spec.job import CheckpointPolicy


def record_and_commit(
    session: Session,
    job_id: str,
    attempt: int,
    name: str,
    kind: str,
    stored: StoredObject,
    settings: Settings,
) -> list[str]:
    """Record the upload; returns the storage keys of the files it made obsolete (the one of
    the same name it replaced, and checkpoints beyond the kept number)."""
    # Still current after the upload? Read fresh and lock the job row (on PostgreSQL), so a
    # finish cannot slip in between this check and the commit.
    job, _ = service.current_attempt(session, job_id, attempt, lock=True)
    replaced = record_artifact(session, job_id, attempt, name, kind, stored)
    superseded = [replaced] if replaced is not None else []
    if kind == "checkpoint":
        # The stored spec is normalized: its policy alone is read, not the whole spec.
        policy = CheckpointPolicy.model_validate(job.spec.get("checkpoints") or {})
        keep_last = policy.keep_last or settings.keep_checkpoints
        superseded += prune_checkpoints(session, job_id, keep_last, policy.keep_best)
    session.commit()
    return superseded
