"""The HTTP API: one FastAPI app, served by Mangum on Lambda and by uvicorn locally.

On Lambda the API is served by `LazyApi`, which builds, on a container's first request for a
resource, an app holding only that resource's routes: a cold start then imports and builds one
route module rather than all of them. Every app it builds comes from `create_app`, so the routes,
error handling and answers are the same; `/docs` and `/openapi.json` get the whole app.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module

from fastapi import APIRouter, FastAPI
from starlette.types import Receive, Scope, Send

from talkturo import __version__
from talkturo.api import errors, openapi

DESCRIPTION = """
Talkturo's control-plane API. Every route lives under `/v1`, takes and returns JSON, and is
authenticated with an API key: `Authorization: Bearer tk_…`.

Errors share one envelope: `{"error": {"type", "code", "message", "param"}}`.
Lists are newest first and cursor-paginated: pass a page's `next_cursor` as `starting_after`.
Creating POSTs accept an `Idempotency-Key` header.
"""

# Each route module of talkturo.api.routes, with the path prefixes its routes live under.
ROUTE_MODULES: dict[str, tuple[str, ...]] = {
    "dialing": ("/v1/account/dialing",),  # before "account": the first module that matches serves
    "account": ("/v1/account", "/v1/api-keys"),
    "credits": ("/v1/credits",),
    "admin": ("/v1/admin",),
    "companies": ("/v1/companies",),
    "contacts": ("/v1/contacts",),
    "custom_fields": ("/v1/custom-fields",),
    "contact_imports": ("/v1/contact-imports",),
    "assistants": ("/v1/assistants", "/v1/assistant-templates", "/v1/catalog"),
    "phone_numbers": ("/v1/phone-numbers",),
    "calls": ("/v1/calls",),
    "campaigns": ("/v1/campaigns",),
    "analysis_runs": ("/v1/analysis-runs",),
    "webhook_endpoints": ("/v1/webhook-endpoints",),
}


def create_app(modules: Iterable[str] | None = None) -> FastAPI:
    """The API with the routes of `modules` (default: all of them)."""
    app = FastAPI(
        title="Talkturo API",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    errors.install(app)
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]

    @app.get("/health", tags=["Health"], summary="Liveness check (no authentication)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    v1 = APIRouter(prefix="/v1")
    for name in ROUTE_MODULES if modules is None else modules:
        v1.include_router(import_module(f"talkturo.api.routes.{name}").router)
    app.include_router(v1)
    return app


def route_module_for(path: str) -> str | None:
    """The route module serving `path`, or None when no single module does."""
    for name, prefixes in ROUTE_MODULES.items():
        if any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes):
            return name
    return None


class LazyApi:
    """An ASGI app that builds each route module's app on the first request that needs it."""

    def __init__(self) -> None:
        self._apps: dict[str, FastAPI] = {}

    def app_for(self, path: str) -> FastAPI:
        modules: list[str] | None
        if path == "/health":
            key, modules = "/health", []
        else:
            module = route_module_for(path)
            # Anything else (docs, the OpenAPI document, unknown paths) gets the whole API.
            key, modules = (module, [module]) if module else ("*", None)
        app = self._apps.get(key)
        if app is None:
            app = self._apps[key] = create_app(modules)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app_for(str(scope.get("path", "")))(scope, receive, send)
