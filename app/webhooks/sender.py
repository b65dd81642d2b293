"""The sender: a thread in each API process that sends due deliveries, at least once.

It wakes when a commit in this process wrote deliveries (app/webhooks/events.py), and every
``webhook_poll_seconds`` for the rest (retries coming due, deliveries another process wrote).
Several API processes may send at once: a delivery is *claimed* first (on PostgreSQL the
candidates are selected ``FOR UPDATE SKIP LOCKED``; on both backends the claim is a
compare-and-set on ``claimed_until``), sent outside any transaction, and its outcome recorded
only by the claim's holder. A sender that dies mid-send leaves a claim that runs out, and the
delivery is sent again, with the same ``webhook-id``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from taas.app.core.config import Settings
from taas.app.core.db import DATABASE_UNAVAILABLE, describe_database_error, session_scope, utcnow
from taas.app.webhooks.addresses import UnsafeUrl, check_url
from taas.app.webhooks.events import DELIVERIES_WRITTEN
from taas.app.webhooks.models import WebhookDelivery, WebhookEndpoint
from taas.app.webhooks.retries import due_at, next_delay, parse_retry_after
from taas.app.webhooks.signing import signed_headers
from taas.app.webhooks.transport import Answer, post

logger = logging.getLogger(__name__)

BATCH = 32  # deliveries claimed per pass
PARALLEL_SENDS = 8  # a slow receiver holds one of these, not the whole sender
CLAIM_MARGIN_SECONDS = 30.0  # a claim outlives the send's timeout by this much


@dataclass(frozen=True)
class Claimed:
    """A delivery this sender holds, with what it needs to send it."""

    id: str
    token: str
    endpoint_id: str
    url: str
    secret: str
    body: str
    attempts: int


def claim_due(settings: Settings, limit: int = BATCH) -> list[Claimed]:
    """Claim up to ``limit`` pending deliveries that are due, to enabled endpoints."""
    now = utcnow()
    until = now + timedelta(seconds=settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS)
    with session_scope() as session:
        query = (
            select(WebhookDelivery, WebhookEndpoint)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                _unclaimed(now),
                WebhookEndpoint.disabled_at.is_(None),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            # Rows another sender is claiming right now are skipped, not waited for.
            query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
        claimed = [
            claim
            for delivery, endpoint in session.execute(query).all()
            if (claim := _claim(session, delivery, endpoint, now, until)) is not None
        ]
    return claimed


def _unclaimed(now: datetime) -> Any:
    return or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now)


def _claim(
    session: Session,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    now: datetime,
    until: datetime,
) -> Claimed | None:
    """Compare-and-set: the claim holds only if no other sender took the delivery meanwhile."""
    token = secrets.token_hex(8)
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status == "pending",
            _unclaimed(now),
        )
        .values(claim_token=token, claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return Claimed(
        delivery.id,
        token,
        endpoint.id,
        endpoint.url,
        endpoint.secret,
        delivery.body,
        delivery.attempts,
    )


def send(claim: Claimed, settings: Settings) -> Answer:
    """Sign and POST one delivery to the endpoint's URL, checked again now (its name may
    resolve elsewhere than when the endpoint was created)."""
    headers = signed_headers(claim.secret, claim.id, int(time.time()), claim.body)
    try:
        target = check_url(claim.url, allow_private=settings.webhook_allow_private)
    except UnsafeUrl as error:
        return Answer(error=str(error))
    return post(target, headers, claim.body, settings.webhook_timeout_seconds)


def record(claim: Claimed, answer: Answer, settings: Settings) -> str:
    """Store the attempt's outcome (only while the claim is still ours); returns the status."""
    now = utcnow()
    attempts = claim.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_status_code": answer.status_code,
        "last_error": _describe_failure(answer),
        "last_response": answer.body_prefix,
        "claim_token": None,
        "claimed_until": None,
    }
    with session_scope() as session:
        if answer.delivered:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
        elif answer.status_code == 410:
            values.update(status="failed", next_attempt_at=None)
            _disable_endpoint(session, claim.endpoint_id, now)
        else:
            values.update(_retry_or_give_up(answer, attempts, now, settings))
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == claim.id, WebhookDelivery.claim_token == claim.token)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return str(values["status"])


def _retry_or_give_up(
    answer: Answer, attempts: int, now: datetime, settings: Settings
) -> dict[str, Any]:
    retry_after = parse_retry_after(answer.retry_after, now)
    delay = next_delay(settings.webhook_retry_schedule, attempts, retry_after)
    if delay is None:
        return {"status": "gave_up", "next_attempt_at": None}
    return {"status": "pending", "next_attempt_at": due_at(now, delay)}


def _describe_failure(answer: Answer) -> str | None:
    if answer.delivered:
        return None
    if answer.error is not None:
        return answer.error
    code = answer.status_code
    if code is not None and 300 <= code < 400:
        return f"HTTP {code}: redirects are not followed"
    if code == 410:
        return "HTTP 410 Gone: the endpoint is disabled"
    return f"HTTP {code}"


def _disable_endpoint(session: Session, endpoint_id: str, now: datetime) -> None:
    """The receiver said 410 Gone: nothing more goes to it, queued deliveries included."""
    reason = f"the receiver answered 410 Gone at {now.isoformat()}"
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(status="failed", next_attempt_at=None, last_error="the endpoint is disabled (410)")
        .execution_options(synchronize_session=False)
    )
    logger.warning("webhook endpoint %s answered 410 Gone: disabled", endpoint_id)


def send_due(settings: Settings, pool: ThreadPoolExecutor) -> dict[str, str]:
    """One pass: claim what is due, send it in parallel, record each outcome. Returns the
    status of each delivery tried, by id."""
    claims = claim_due(settings)

    def deliver(claim: Claimed) -> str:
        status = record(claim, send(claim, settings), settings)
        logger.info("webhook delivery %s to endpoint %s: %s", claim.id, claim.endpoint_id, status)
        return status

    return dict(zip((claim.id for claim in claims), pool.map(deliver, claims), strict=True))


class WebhookSender:
    """Runs ``send_due`` whenever deliveries were written here, or every poll period."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(PARALLEL_SENDS, thread_name_prefix="taas-webhook-send")
        self.thread = threading.Thread(target=self._loop, name="taas-webhooks", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        DELIVERIES_WRITTEN.set()
        self.thread.join(timeout=self.settings.webhook_timeout_seconds + 5)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self.stopped.is_set():
            DELIVERIES_WRITTEN.wait(self.settings.webhook_poll_seconds)
            DELIVERIES_WRITTEN.clear()
            if self.stopped.is_set():
                return
            try:
                tried = send_due(self.settings, self.pool)
            except DATABASE_UNAVAILABLE as error:
                logger.warning("webhook pass failed: %s", describe_database_error(error))
                continue
            except Exception:  # a bug or a hiccup must not end sending for good
                logger.exception("webhook pass failed; trying again next period")
                continue
            if len(tried) == BATCH:
                DELIVERIES_WRITTEN.set()  # a full batch: more may be due now
