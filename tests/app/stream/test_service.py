"""Stream event ids are handed out in commit order: a reader polling "after the last id I saw"
while many writers commit never skips an event (the guarantee Last-Event-ID rests on)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core import migrate
from taas.app.core.config import get_settings
from taas.app.core.db import open_session, session_scope
from taas.app.jobs.models import Job
from taas.app.jobs.service import submit_job
from taas.app.spec import JobSpec
from taas.app.stream.models import StreamEvent
from taas.app.stream.service import publish, read_after
from tests.conftest import TINY_SYNTHETIC, clear_caches

WRITERS, EVENTS_EACH = 6, 30


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, taas_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "postgresql":
        monkeypatch.setenv("TAAS_DATABASE_URL", request.getfixturevalue("postgres_url"))
        clear_caches()
        migrate.upgrade()
    yield request.param
    clear_caches()


@pytest.fixture
def slow_commits() -> Iterator[None]:
    """Between writing its events and committing, a transaction dawdles (as one does when its
    process is descheduled): without ordering, a later id could then commit first."""

    def dawdle(session: Session, _context: Any) -> None:
        if any(isinstance(row, StreamEvent) for row in session.new):
            time.sleep(random.uniform(0, 0.02))

    event.listen(Session, "after_flush", dawdle)
    yield
    event.remove(Session, "after_flush", dawdle)


def job_for_tenant(make_key: Any) -> Job:
    make_key("acme")

    with session_scope() as session:
        tenant = session.scalars(select(Tenant)).one()
        job = submit_job(session, tenant, JobSpec.model_validate(TINY_SYNTHETIC), get_settings())
    return job


def test_a_polling_reader_never_skips_an_event_that_commits_late(
    database: str, make_key: Any, slow_commits: None
) -> None:
    job = job_for_tenant(make_key)
    seen: list[int] = []
    writing = threading.Event()

    def write(writer: int) -> None:
        for number in range(EVENTS_EACH):
            with session_scope() as session:
                publish(session, job, "log", {"message": f"{writer}.{number}"})

    def read() -> None:
        """Poll for events after the last one seen until the writers are done, then once more."""
        while True:
            finished = not writing.is_set()
            session = open_session()
            try:
                after = seen[-1] if seen else 0
                seen.extend(published.id for published in read_after(session, after, job_id=job.id))
            finally:
                session.close()
            if finished:
                return
            time.sleep(0.001)

    writing.set()
    writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    reader.join(timeout=10)

    with session_scope() as session:
        everything = [e.id for e in read_after(session, 0, job_id=job.id, limit=10_000)]
    assert len(everything) == WRITERS * EVENTS_EACH + 1  # and the job's "queued" status
    assert seen == everything  # nothing skipped, nothing twice, in order
