"""The carrier webhooks as an ASGI app (the local platform serves it beside the API).

Same handler as the Lambda (`talkturo.webhooks.carrier.handle`); the URL the carrier called is
the request's own (scheme, Host header, path, query), as uvicorn saw it. GET and POST reach the
handler, which allows GET only for the kinds the carrier fetches that way (wait, ringback.wav).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from talkturo.webhooks import carrier

PREFIX = "/carrier/"
MAX_BODY_BYTES = 64 * 1024


async def _webhook(request: Request) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return Response(status_code=413)
    url = carrier.request_url(
        scheme=request.url.scheme,
        host=request.url.hostname or "",
        port=request.url.port,
        path=request.url.path,
        query=request.url.query,
    )
    headers = {name.lower(): value for name, value in request.headers.items()}
    answer = await run_in_threadpool(
        carrier.handle,
        request.path_params["kind"],
        url=url,
        method=request.method,
        headers=headers,
        body=body,
    )
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


def create_webhook_app() -> Starlette:
    return Starlette(routes=[Route("/carrier/{kind}", _webhook, methods=["POST", "GET"])])


def with_carrier_webhooks(api: ASGIApp) -> ASGIApp:
    """`api` for every path but /carrier/*, which goes to the webhook app."""
    webhooks = create_webhook_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(PREFIX):
            await webhooks(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app
