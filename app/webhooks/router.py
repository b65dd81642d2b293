"""Public webhook routes (HTTP only; logic in service.py, sending in sender.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from taas.app.auth.dependencies import CurrentTenant, SettingsDep
from taas.app.core.db import SessionDep
from taas.app.webhooks import service
from taas.app.webhooks.models import WebhookEndpoint
from taas.app.webhooks.schemas import (
    DeliveryList,
    WebhookCreated,
    WebhookIn,
    WebhookList,
    WebhookOut,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such webhook for this tenant"}
}
WebhookId = Annotated[str, Path(max_length=200, description="the webhook id, `wh_...`")]


def valid_owned_endpoint(
    webhook_id: WebhookId, session: SessionDep, tenant: CurrentTenant
) -> WebhookEndpoint:
    return service.get_owned_endpoint(session, tenant, webhook_id)


OwnedEndpoint = Annotated[WebhookEndpoint, Depends(valid_owned_endpoint)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={
        422: {
            "description": "a field is wrong, or the URL's host does not resolve to a public "
            "address (checked when the webhook is created)"
        },
        429: {"description": "the tenant has the most webhooks allowed"},
    },
)
def create_webhook(
    request: WebhookIn, session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> WebhookCreated:
    endpoint = service.create_endpoint(session, tenant, request, settings)
    session.commit()
    described = service.describe(endpoint).model_dump()
    return WebhookCreated(**described, secret=endpoint.secret)


@router.get("", response_model=WebhookList)
def list_webhooks(session: SessionDep, tenant: CurrentTenant) -> WebhookList:
    endpoints = service.list_endpoints(session, tenant)
    return WebhookList(items=[service.describe(endpoint) for endpoint in endpoints])


@router.get("/{webhook_id}", response_model=WebhookOut, responses=NOT_FOUND)
def get_webhook(endpoint: OwnedEndpoint) -> WebhookOut:
    return service.describe(endpoint)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_webhook(endpoint: OwnedEndpoint, session: SessionDep) -> Response:
    service.delete_endpoint(session, endpoint)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList, responses=NOT_FOUND)
def list_deliveries(
    endpoint: OwnedEndpoint,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    return DeliveryList(items=service.deliveries(session, endpoint, limit))
