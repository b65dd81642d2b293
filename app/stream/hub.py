"""One reader of new stream events per API process, shared by every open stream.

While anyone listens, the hub asks the database every POLL_SECONDS for events past the last it
saw (one small query, however many clients are connected) and hands each event to the
subscriptions it concerns. The database is what connects processes: a worker's report, written
through any API process, reaches a client connected to any other. Ids are handed out in commit
order (see service.py), so reading "after the last id" never skips an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.orm import Session

from taas.app.core.db import DATABASE_UNAVAILABLE, describe_database_error
from taas.app.stream.service import Published, newest_id, read_after

logger = logging.getLogger(__name__)
T = TypeVar("T")

POLL_SECONDS = 0.2
# Events a subscription may hold unread; a client that falls this far behind is disconnected
# (it reconnects with Last-Event-ID and is served from the database).
SUBSCRIPTION_BUFFER = 10_000
READ_BATCH = 1000


@dataclass(eq=False)
class Subscription:
    """A stream's interest: one tenant's events, or one job's."""

    tenant_id: int
    job_id: str | None
    queue: asyncio.Queue[Published] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIPTION_BUFFER)
    )
    overflowed: bool = False

    def wants(self, event: Published) -> bool:
        return event.tenant_id == self.tenant_id and self.job_id in (None, event.job_id)

    def offer(self, event: Published) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class StreamHub:
    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self.session_factory = session_factory
        self.subscriptions: set[Subscription] = set()
        self.watermark: int | None = None  # the newest id dispatched; None while not polling
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def subscribe(self, tenant_id: int, job_id: str | None = None) -> Subscription:
        """Register, and return once the hub is polling: every event past ``watermark`` (read
        now) reaches the subscription's queue."""
        subscription = Subscription(tenant_id, job_id)
        self.subscriptions.add(subscription)
        if self.task is None or self.task.done():
            self.ready.clear()
            self.task = asyncio.create_task(self._poll(), name="taas-stream-hub")
        try:
            await self.ready.wait()
        except BaseException:  # cancelled: the client went away before the hub was ready
            self.unsubscribe(subscription)
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _poll(self) -> None:
        """Dispatch new events until nobody listens; the next subscriber starts it again."""
        try:
            self.watermark = await self._read(lambda session: newest_id(session), retry=True)
            self.ready.set()
            while self.subscriptions:
                events = await self._read(
                    lambda session: read_after(session, self.watermark or 0, limit=READ_BATCH)
                )
                for event in events or ():
                    self.watermark = event.id
                    for subscription in list(self.subscriptions):
                        if subscription.wants(event):
                            subscription.offer(event)
                if not events or len(events) < READ_BATCH:
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            self.watermark = None
            self.ready.clear()

    async def _read(self, query: Callable[[Session], T], retry: bool = False) -> T | None:
        """Run ``query`` in a short session off the event loop. While the database is away the
        streams wait (and keep their keep-alives), they do not fail."""
        while True:
            try:
                return await asyncio.to_thread(self._run_query, query)
            except DATABASE_UNAVAILABLE as error:
                logger.warning("stream: database unavailable: %s", describe_database_error(error))
                if not retry:
                    return None
                await asyncio.sleep(1.0)

    def _run_query(self, query: Callable[[Session], T]) -> T:
        session = self.session_factory()
        try:
            return query(session)
        finally:
            session.rollback()
            session.close()
