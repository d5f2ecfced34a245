"""Assistants, their templates, the provider catalog and the per-minute estimate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.api.routes import test_runs as test_runs_routes
from talkturo.domain.assistants import (
    Assistant,
    AssistantClone,
    AssistantDeleted,
    AssistantEstimate,
    AssistantTemplate,
    AssistantWrite,
)
from talkturo.domain.catalog import Catalog
from talkturo.domain.common import Page
from talkturo.services import assistants

router = APIRouter(tags=["Assistants"])


@router.get(
    "/catalog",
    response_model=Catalog,
    summary="Every provider an assistant can use, with models, voices, languages and rates",
)
def get_catalog(caller: Caller) -> Catalog:
    return assistants.get_catalog_view()


@router.get(
    "/assistant-templates",
    response_model=Page[AssistantTemplate],
    summary="The templates a new assistant can start from",
)
def list_templates(caller: Caller) -> Page[AssistantTemplate]:
    return assistants.list_templates()


@router.post(
    "/assistants/estimate",
    response_model=AssistantEstimate,
    summary="Credits per minute of an assistant configuration, before saving it",
)
def estimate(caller: Caller, body: AssistantWrite) -> AssistantEstimate:
    return assistants.estimate(body.changes())


@router.post(
    "/assistants",
    response_model=Assistant,
    status_code=201,
    summary="Create an assistant (from a template, with overrides)",
)
def create_assistant(
    caller: Caller, body: AssistantWrite, idempotency_key: IdempotencyKey = None
) -> Any:
    changes = body.changes()
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/assistants",
        body=changes,
        work=lambda: assistants.create_assistant(caller.account_id, changes),
    )


@router.get("/assistants", response_model=Page[Assistant], summary="List assistants, newest first")
def list_assistants(caller: Caller, paging: Paging) -> Page[Assistant]:
    return assistants.list_assistants(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get("/assistants/{assistant_id}", response_model=Assistant, summary="Get an assistant")
def get_assistant(caller: Caller, assistant_id: str) -> Assistant:
    return assistants.get_assistant(caller.account_id, assistant_id)


@router.patch(
    "/assistants/{assistant_id}",
    responses=errors_at(409),
    response_model=Assistant,
    summary="Change an assistant (objects merge, lists replace; validated whole)",
)
def update_assistant(caller: Caller, assistant_id: str, body: AssistantWrite) -> Assistant:
    return assistants.update_assistant(caller.account_id, assistant_id, body.changes())


@router.delete(
    "/assistants/{assistant_id}",
    responses=errors_at(409),
    response_model=AssistantDeleted,
    summary="Delete an assistant (refused while numbers are assigned or campaigns run)",
)
def delete_assistant(caller: Caller, assistant_id: str) -> AssistantDeleted:
    return assistants.delete_assistant(caller.account_id, assistant_id)


@router.post(
    "/assistants/{assistant_id}/clone",
    response_model=Assistant,
    status_code=201,
    summary="Copy an assistant (everything but its numbers and campaigns)",
)
def clone_assistant(
    caller: Caller,
    assistant_id: str,
    body: AssistantClone | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    name = body.name if body else None
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route=f"POST /v1/assistants/{assistant_id}/clone",
        body={"name": name},
        work=lambda: assistants.clone_assistant(caller.account_id, assistant_id, name),
    )


# An assistant's test suites and test runs live under its path (docs/test-runs.md).
router.include_router(test_runs_routes.router)
