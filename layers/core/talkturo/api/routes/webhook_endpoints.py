"""Webhook endpoints: where the account's events go, their secrets, tests and delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.common import Page
from talkturo.domain.events import (
    DeliveryStatus,
    WebhookDeliveryWithBody,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    WebhookSecret,
)
from talkturo.services import events

router = APIRouter(tags=["Webhook endpoints"])


def owned_endpoint(caller: Caller, endpoint_id: str) -> WebhookEndpoint:
    """The caller's endpoint (404 otherwise), checked before any body is read."""
    return events.get_endpoint(caller.account_id, endpoint_id)


Owned = Annotated[WebhookEndpoint, Depends(owned_endpoint)]


@router.post(
    "/webhook-endpoints",
    response_model=WebhookEndpointWithSecret,
    status_code=201,
    responses=errors_at(409),
    summary="Register an endpoint for the account's events (its secret is shown here)",
)
def create_webhook_endpoint(
    caller: Caller, body: WebhookEndpointCreate, idempotency_key: IdempotencyKey = None
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/webhook-endpoints",
        body=body,
        work=lambda: events.create_endpoint(caller.account_id, body),
    )


@router.get(
    "/webhook-endpoints",
    response_model=Page[WebhookEndpoint],
    summary="List webhook endpoints, newest first",
)
def list_webhook_endpoints(caller: Caller, paging: Paging) -> Page[WebhookEndpoint]:
    return events.list_endpoints(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get(
    "/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpoint,
    summary="Get a webhook endpoint",
)
def get_webhook_endpoint(endpoint: Owned) -> WebhookEndpoint:
    return endpoint


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpoint,
    responses=errors_at(409),
    summary="Change an endpoint's URL, description or event types; pause or re-enable it",
)
def update_webhook_endpoint(
    caller: Caller, endpoint: Owned, changes: WebhookEndpointUpdate
) -> WebhookEndpoint:
    return events.update_endpoint(caller.account_id, endpoint.id, changes)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpoint,
    summary="Delete a webhook endpoint (nothing more is sent to it)",
)
def delete_webhook_endpoint(caller: Caller, endpoint: Owned) -> WebhookEndpoint:
    return events.delete_endpoint(caller.account_id, endpoint.id)


@router.get(
    "/webhook-endpoints/{endpoint_id}/secret",
    response_model=WebhookSecret,
    summary="Reveal the endpoint's signing secret",
)
def reveal_webhook_secret(caller: Caller, endpoint: Owned) -> WebhookSecret:
    return events.reveal_secret(caller.account_id, endpoint.id)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=WebhookSecret,
    responses=errors_at(409),
    summary="A new signing secret; the previous one signs too for 24 hours",
)
def rotate_webhook_secret(caller: Caller, endpoint: Owned) -> WebhookSecret:
    return events.rotate_secret(caller.account_id, endpoint.id)


@router.post(
    "/webhook-endpoints/{endpoint_id}/test",
    response_model=WebhookDeliveryWithBody,
    responses=errors_at(409),
    summary="Send a webhook.test event now; answers its delivery with the first attempt",
)
def send_webhook_test_event(caller: Caller, endpoint: Owned) -> WebhookDeliveryWithBody:
    return events.send_test(caller.account_id, endpoint.id)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=Page[WebhookDeliveryWithBody],
    summary="The endpoint's delivery log, newest first",
)
def list_webhook_deliveries(
    caller: Caller,
    endpoint: Owned,
    paging: Paging,
    status: Annotated[DeliveryStatus | None, Query(description="Only deliveries in it.")] = None,
) -> Page[WebhookDeliveryWithBody]:
    return events.list_deliveries(
        caller.account_id,
        endpoint.id,
        status=status,
        limit=paging.limit,
        starting_after=paging.starting_after,
    )


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}",
    response_model=WebhookDeliveryWithBody,
    summary="One delivery with its attempts",
)
def get_webhook_delivery(
    caller: Caller, endpoint: Owned, delivery_id: str
) -> WebhookDeliveryWithBody:
    return events.get_delivery(caller.account_id, endpoint.id, delivery_id)


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
    response_model=WebhookDeliveryWithBody,
    status_code=202,
    responses=errors_at(409),
    summary="Send the delivery's event again now (the same webhook-id)",
)
def replay_webhook_delivery(
    caller: Caller, endpoint: Owned, delivery_id: str
) -> WebhookDeliveryWithBody:
    return events.replay(caller.account_id, endpoint.id, delivery_id)
