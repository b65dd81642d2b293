"""The live stream: Server-Sent Events for one job, or for all of the tenant's jobs.

Every event has an ``id``; a client that reconnects with ``Last-Event-ID`` gets exactly what it
missed. FastAPI's EventSourceResponse does the framing and sends a keep-alive comment whenever
the stream has been quiet for 15 s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from taas.app.auth.dependencies import CurrentTenant
from taas.app.core.db import SessionDep, open_session
from taas.app.jobs.router import NOT_FOUND, OwnedJob
from taas.app.stream.hub import StreamHub, Subscription
from taas.app.stream.service import Published, read_after

router = APIRouter(tags=["stream"])

REPLAY_BATCH = 500
# Uvicorn cancels a streaming response as soon as its client goes away, which frees the
# subscription at once; a quiet stream also checks this often, for servers that do not.
DISCONNECT_CHECK_SECONDS = 10.0

LastEventId = Annotated[
    str | None,
    Header(
        max_length=20,
        pattern=r"^[0-9]+$",
        description="resume after this event id (browsers send it when they reconnect)",
    ),
]
EVENT_TYPES = (
    "Each event has an `id`, an `event` type and one line of JSON `data` (every data has "
    "`job_id`): `status` {status, attempt, message, created_at}; `progress` {epoch, epochs, "
    "fraction, batches_done, batches_per_epoch, samples_per_second, eta_seconds}; `metric` "
    "{granularity: step, step, epoch, kind, train_loss, lr, val_loss, val_accuracy} or "
    "{granularity: epoch, ...a MetricPoint}; `log` {attempt, message, created_at}; `end` "
    "{status, error, test_accuracy, test_loss, stop_reason}, a job's last event."
)


async def job_subscription(
    job: OwnedJob, session: SessionDep, request: Request
) -> AsyncIterator[Subscription]:
    """The hub's subscription to one job's events, for as long as the request lasts."""
    session.close()  # a stream may stay open for hours: it must not hold a connection
    async for subscription in _subscribed(request, job.tenant_id, job.id):
        yield subscription


async def tenant_subscription(
    tenant: CurrentTenant, session: SessionDep, request: Request
) -> AsyncIterator[Subscription]:
    """The hub's subscription to all of a tenant's events, for as long as the request lasts."""
    session.close()
    async for subscription in _subscribed(request, tenant.id, None):
        yield subscription


async def _subscribed(
    request: Request, tenant_id: int, job_id: str | None
) -> AsyncIterator[Subscription]:
    # Dropped here, when the request ends, and not in the stream's own generator: on a
    # disconnect FastAPI cancels the task that pulls from that generator, and a generator
    # paused at a `yield` is not resumed by that cancel. Its `finally` would run only when the
    # garbage collector reaches it, and until then the hub would keep serving a gone client.
    hub: StreamHub = request.app.state.stream_hub
    subscription = await hub.subscribe(tenant_id, job_id)
    try:
        yield subscription
    finally:
        hub.unsubscribe(subscription)


JobSubscription = Annotated[Subscription, Depends(job_subscription)]
TenantSubscription = Annotated[Subscription, Depends(tenant_subscription)]


@router.get(
    "/v1/jobs/{job_id}/stream",
    response_class=EventSourceResponse,
    responses=NOT_FOUND,
    description="The job's events as Server-Sent Events, from its first (or after "
    "`Last-Event-ID`); the stream closes after the job's `end` event, at once for a job that "
    "already ended. " + EVENT_TYPES,
)
async def job_stream(
    job: OwnedJob,
    subscription: JobSubscription,
    request: Request,
    last_event_id: LastEventId = None,
) -> AsyncIterable[ServerSentEvent]:
    job_id, tenant_id, ended = job.id, job.tenant_id, job.is_terminal
    last = int(last_event_id or 0)
    async for event in _replay(last, tenant_id, job_id):
        yield _framed(event)
        last = event.id
        if event.kind == "end":
            return
    if ended:  # its end was sent before Last-Event-ID, or it ended before streams existed
        return
    async for event in _live(subscription, last, request):
        yield _framed(event)
        if event.kind == "end":
            return


@router.get(
    "/v1/stream",
    response_class=EventSourceResponse,
    description="The events of all of the tenant's jobs as Server-Sent Events, from now on "
    "(or after `Last-Event-ID`); it stays open. " + EVENT_TYPES,
)
async def tenant_stream(
    tenant: CurrentTenant,
    subscription: TenantSubscription,
    request: Request,
    last_event_id: LastEventId = None,
) -> AsyncIterable[ServerSentEvent]:
    tenant_id = tenant.id
    hub: StreamHub = request.app.state.stream_hub
    # Without Last-Event-ID: from now on (what the hub reads next).
    last = (hub.watermark or 0) if last_event_id is None else int(last_event_id)
    async for event in _replay(last, tenant_id, None):
        yield _framed(event)
        last = event.id
    async for event in _live(subscription, last, request):
        yield _framed(event)


async def _replay(after: int, tenant_id: int, job_id: str | None) -> AsyncIterable[Published]:
    """What the database holds past ``after``, in batches."""
    while True:
        events = await asyncio.to_thread(_read, after, tenant_id, job_id)
        for event in events:
            yield event
            after = event.id
        if len(events) < REPLAY_BATCH:
            return


def _read(after: int, tenant_id: int, job_id: str | None) -> list[Published]:
    session = open_session()
    try:
        return read_after(session, after, tenant_id=tenant_id, job_id=job_id, limit=REPLAY_BATCH)
    finally:
        session.close()


async def _live(
    subscription: Subscription, last: int, request: Request
) -> AsyncIterable[Published]:
    """Events as the hub dispatches them, skipping those the replay already sent. Ends when the
    client goes away, or falls too far behind (it reconnects and is served from the database)."""
    while not subscription.overflowed:
        try:
            event = await asyncio.wait_for(subscription.queue.get(), DISCONNECT_CHECK_SECONDS)
        except TimeoutError:
            if await request.is_disconnected():
                return
            continue
        if event.id > last:
            yield event
            last = event.id


def _framed(event: Published) -> ServerSentEvent:
    data = json.dumps(event.data, separators=(",", ":"))
    return ServerSentEvent(id=str(event.id), event=event.kind, raw_data=data)
