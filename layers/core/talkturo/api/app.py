"""The HTTP API: one FastAPI app, served by Mangum on Lambda and by uvicorn locally."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from talkturo import __version__
from talkturo.api import errors
from talkturo.api.routes import account, admin, assistants, credits, crm

DESCRIPTION = """
Talkturo's control-plane API. Every route lives under `/v1`, takes and returns JSON, and is
authenticated with an API key: `Authorization: Bearer tk_…`.

Errors share one envelope: `{"error": {"type", "code", "message", "param"}}`.
Lists are newest first and cursor-paginated: pass a page's `next_cursor` as `starting_after`.
Creating POSTs accept an `Idempotency-Key` header.
"""


def create_app() -> FastAPI:
    app = FastAPI(
        title="Talkturo API",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    errors.install(app)

    @app.get("/health", tags=["Health"], summary="Liveness check (no authentication)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    v1 = APIRouter(prefix="/v1")
    for module in (account, credits, admin, crm, assistants):
        v1.include_router(module.router)
    app.include_router(v1)
    return app
