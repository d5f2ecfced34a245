"""CSV imports of contacts, and their progress and per-row report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from talkturo.api.deps import Caller, IdempotencyKey, Paging
from talkturo.api.idempotency import create_once
from talkturo.api.openapi import errors_at
from talkturo.domain.common import Page
from talkturo.domain.contact_imports import MAX_BYTES, ContactImport, ImportRowError
from talkturo.services import contact_imports

router = APIRouter(tags=["Contact imports"])


@dataclass
class CsvUpload:
    raw: bytes  # the file; only its start when it is over the import limit
    size: int  # bytes of the whole upload


async def csv_body(request: Request) -> CsvUpload:
    """The raw body (a CSV file is not JSON, FastAPI must not parse it). Past the import limit
    the rest is counted, not kept, so a refusal can say how big the file really is."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if size <= MAX_BYTES:
            chunks.append(chunk)
        size += len(chunk)
    return CsvUpload(raw=b"".join(chunks), size=size)


CSV_REQUEST_BODY = {
    "required": True,
    "description": "The CSV file itself (UTF-8, at most 5 MB); the first row names the columns.",
    "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
}


@router.post(
    "/contact-imports",
    responses=errors_at(413, 415),
    response_model=ContactImport,
    status_code=202,
    summary="Import contacts from a CSV file (processed in the background)",
    openapi_extra={"requestBody": CSV_REQUEST_BODY},
)
def create_import(
    caller: Caller,
    upload: Annotated[CsvUpload, Depends(csv_body)],
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    return create_once(
        account_id=caller.account_id,
        key=idempotency_key,
        route="POST /v1/contact-imports",
        body={"sha256": contact_imports.fingerprint(upload.raw), "size": upload.size},
        work=lambda: contact_imports.start(
            caller.account_id, upload.raw, content_type, size=upload.size
        ),
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
