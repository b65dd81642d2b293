"""Webhook endpoints for the public API: create, list, describe, delete, deliveries. Flushes,
never commits."""

from __future__ import annotations

import secrets

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from taas.app.auth.models import Tenant
from taas.app.core.config import Settings
from taas.app.core.errors import InvalidInput, NotFound, TooManyRequests
from taas.app.webhooks.addresses import UnsafeUrl, check_url
from taas.app.webhooks.models import WebhookDelivery, WebhookEndpoint
from taas.app.webhooks.schemas import DeliveryOut, WebhookIn, WebhookOut
from taas.app.webhooks.signing import new_secret

WEBHOOK_ID_PREFIX = "wh_"


def create_endpoint(
    session: Session, tenant: Tenant, request: WebhookIn, settings: Settings
) -> WebhookEndpoint:
    """Check the URL (scheme, and where its host resolves now) and the tenant's cap."""
    try:
        check_url(request.url, allow_private=settings.webhook_allow_private)
    except UnsafeUrl as error:
        raise InvalidInput(["body", "url"], str(error)) from error
    _check_endpoint_count(session, tenant, settings.webhook_max_endpoints_per_tenant)
    endpoint = WebhookEndpoint(
        id=f"{WEBHOOK_ID_PREFIX}{secrets.token_hex(12)}",
        tenant_id=tenant.id,
        url=request.url,
        events=sorted(set(request.events)),
        secret=new_secret(),
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def _check_endpoint_count(session: Session, tenant: Tenant, most: int) -> None:
    count = session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant.id)
    )
    if (count or 0) >= most:
        raise TooManyRequests(
            f"this tenant already has {count} webhooks, the most allowed "
            "(TAAS_WEBHOOK_MAX_ENDPOINTS_PER_TENANT); delete one first"
        )


def get_owned_endpoint(session: Session, tenant: Tenant, webhook_id: str) -> WebhookEndpoint:
    """The tenant's endpoint; another tenant's is indistinguishable from a missing one."""
    endpoint = (
        session.get(WebhookEndpoint, webhook_id)
        if webhook_id.startswith(WEBHOOK_ID_PREFIX) and webhook_id.isprintable()
        else None
    )
    if endpoint is None or endpoint.tenant_id != tenant.id:
        raise NotFound(f"webhook {webhook_id[:64]!r} not found")
    return endpoint


def list_endpoints(session: Session, tenant: Tenant) -> list[WebhookEndpoint]:
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant.id)
        .order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id)
    )
    return list(session.scalars(query))


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint and its deliveries (sent or not) go: nothing more is sent to it."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.delete(endpoint)
    session.flush()


def deliveries(session: Session, endpoint: WebhookEndpoint, limit: int) -> list[DeliveryOut]:
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return [DeliveryOut.model_validate(row, from_attributes=True) for row in session.scalars(query)]


def describe(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        created_at=endpoint.created_at,
        enabled=endpoint.disabled_at is None,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
    )
