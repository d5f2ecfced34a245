"""CSV imports of contacts, and their progress and per-row report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.domain.common import Page
from talkturo.domain.contact_imports import MAX_BYTES, ContactImport, ImportRowError
from talkturo.services import contact_imports

router = APIRouter(tags=["Contact imports"])


async def csv_body(request: Request) -> bytes:
    """The raw body (a CSV file is not JSON, FastAPI must not parse it), read no further than
    one byte past the import limit."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BYTES:
            break
    return b"".join(chunks)


CSV_REQUEST_BODY = {
    "required": True,
    "description": "The CSV file itself (UTF-8, at most 5 MB); the first row names the columns.",
    "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
}


@router.post(
    "/contact-imports",
    response_model=ContactImport,
    status_code=202,
    summary="Import contacts from a CSV file (processed in the background)",
    openapi_extra={"requestBody": CSV_REQUEST_BODY},
)
def create_import(
    caller: Caller,
    body: Annotated[bytes, Depends(csv_body)],
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/contact-imports",
        body={"sha256": contact_imports.fingerprint(body)},
        work=lambda: contact_imports.start(caller.account_id, body, content_type),
    )


@router.get(
    "/contact-imports",
    response_model=Page[ContactImport],
    summary="List contact imports, newest first",
)
def list_imports(caller: Caller, paging: Paging) -> Page[ContactImport]:
    return contact_imports.list_imports(
        caller.account_id, limit=paging.limit, starting_after=paging.starting_after
    )


@router.get(
    "/contact-imports/{import_id}",
    response_model=ContactImport,
    summary="A contact import's progress",
)
def get_import(caller: Caller, import_id: str) -> ContactImport:
    return contact_imports.get(caller.account_id, import_id)


@router.get(
    "/contact-imports/{import_id}/errors",
    response_model=Page[ImportRowError],
    summary="The rows an import could not take, in row order",
)
def list_import_errors(caller: Caller, import_id: str, paging: Paging) -> Page[ImportRowError]:
    return contact_imports.row_errors(
        caller.account_id, import_id, limit=paging.limit, starting_after=paging.starting_after
    )
