"""Recording artifacts that a worker uploaded."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from taas.app.artifacts.checkpoints import CHECKPOINT_NAME, checkpoint_epoch
from taas.app.artifacts.models import Artifact
from taas.app.artifacts.storage import StoredObject
from taas.app.core.errors import InvalidInput, MalformedHeader
from taas.app.jobs.models import Job, MetricPoint
from taas.app.jobs.service import record_event
from taas.app.spec.job import KeepBest

ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# RFC 9110 14.1.2: "bytes=" then comma-separated FIRST-LAST, FIRST- or -SUFFIX byte ranges.
BYTE_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
ARTIFACT_KINDS = ("model", "metadata", "checkpoint", "export", "log")
EXPIRE_BATCH = 500  # artifact rows expired per reconciler pass


def check_artifact_name(name: str) -> str:
    """Artifact names are plain file names: no separators, no '..', nothing hidden."""
    if not ARTIFACT_NAME.match(name) or ".." in name:
        raise InvalidInput(
            ["path", "name"],
            f"artifact name {name[:100]!r} is not allowed: use letters, digits, '.', '_', '-'",
        )
    return name


def check_range_header(value: str | None) -> None:
    """Refuse a Range header that is not ``bytes=`` byte ranges, naming what is wrong; ranges
    beyond the file are left to the 416 of the file response."""
    if value is None:
        return
    unit, separator, ranges = value.partition("=")
    if not separator or unit.strip().lower() != "bytes":
        raise MalformedHeader(
            f"malformed Range header {value[:100]!r}: only bytes=... is supported"
        )
    parts = [part for part in ranges.split(",") if part.strip()]  # empty elements are allowed
    if not parts:
        raise MalformedHeader(f"malformed Range header {value[:100]!r}: no byte range in it")
    for part in parts:
        match = BYTE_RANGE.match(part)
        first, last = match.groups() if match else ("", "")
        if not (first or last) or (first and last and int(first) > int(last)):
            raise MalformedHeader(
                f"malformed Range header {value[:100]!r}: {part.strip()[:40]!r} is not "
                "FIRST-LAST, FIRST- or -SUFFIX with FIRST <= LAST"
            )


def check_sha256(value: str | None) -> str:
    if value is None or not SHA256_HEX.match(value):
        raise InvalidInput(["header", "x-content-sha256"], "send the lowercase hex sha256")
    return value


def prune_checkpoints(
    session: Session, job_id: str, keep_last: int, keep_best: KeepBest | None = None
) -> list[str]:
    """Delete the job's checkpoint rows but the ``keep_last`` newest and, with ``keep_best``,
    the one of the epoch that scored best (the newest of equals); returns their storage keys,
    which the caller deletes once the commit went through."""
    checkpoints = session.scalars(
        select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == "checkpoint")
    ).all()
    newest_first = sorted(checkpoints, key=checkpoint_epoch, reverse=True)
    kept = set(newest_first[:keep_last])
    if keep_best is not None:
        best = _best_checkpoint(session, job_id, newest_first, keep_best)
        if best is not None:
            kept.add(best)
    pruned = [artifact for artifact in newest_first if artifact not in kept]
    for artifact in pruned:
        session.delete(artifact)
    session.flush()
    return [artifact.storage_key for artifact in pruned]


def _best_checkpoint(
    session: Session, job_id: str, newest_first: list[Artifact], keep_best: KeepBest
) -> Artifact | None:
    """The checkpoint whose epoch scored best on the metric (its epoch's metrics are reported
    before its checkpoint is saved); None while no epoch has the metric."""
    points = session.scalars(select(MetricPoint).where(MetricPoint.job_id == job_id))
    scores = {point.epoch: getattr(point, keep_best.metric) for point in points}
    scored = [
        (scores[epoch], artifact)
        for artifact in newest_first
        if (epoch := checkpoint_epoch(artifact)) in scores and scores[epoch] is not None
    ]
    if not scored:
        return None
    choose = max if keep_best.mode == "max" else min
    # The newest of equals: newest_first order, and max/min return the first they meet.
    return choose(scored, key=lambda item: item[0])[1]


def latest_checkpoint(session: Session, job_id: str) -> Artifact | None:
    """The checkpoint of the job's latest epoch: where a new attempt resumes."""
    checkpoints = session.scalars(
        select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == "checkpoint")
    ).all()
    return max(checkpoints, key=checkpoint_epoch, default=None)


def check_checkpoint_name(name: str, kind: str) -> None:
    if kind == "checkpoint" and not CHECKPOINT_NAME.match(name):
        raise InvalidInput(
            ["path", "name"], f"checkpoint {name[:100]!r} must be named checkpoint-epoch<N>.pt"
        )


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


def expire_artifacts(
    session: Session, ended_before: datetime, kinds: tuple[str, ...] | None, reason: str
) -> list[str]:
    """Delete the rows of artifacts (of ``kinds``, or all) of jobs that ended before
    ``ended_before``, noting on each job what went and why; returns their storage keys, which
    the caller deletes once the commit went through. A batch at a time, oldest jobs first."""
    query = (
        select(Artifact, Job)
        .join(Job, Job.id == Artifact.job_id)
        .where(Job.finished_at.is_not(None), Job.finished_at < ended_before)
        .order_by(Job.finished_at, Artifact.id)
        .limit(EXPIRE_BATCH)
    )
    if kinds is not None:
        query = query.where(Artifact.kind.in_(kinds))
    expired: dict[str, list[Artifact]] = {}
    jobs = {}
    for artifact, job in session.execute(query).all():
        expired.setdefault(job.id, []).append(artifact)
        jobs[job.id] = job
    for job_id, artifacts in expired.items():
        names = ", ".join(sorted(artifact.name for artifact in artifacts))
        record_event(session, jobs[job_id], f"deleted {names}: {reason}")
        for artifact in artifacts:
            session.delete(artifact)
    session.flush()
    return [artifact.storage_key for artifacts in expired.values() for artifact in artifacts]
