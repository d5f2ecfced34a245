"""The carrier's and Stripe's webhooks as an ASGI app (the local platform serves it beside the
API).

Same handler as the Lambda (`talkturo.webhooks.carrier.handle`); the URL the carrier called is
the request's own (scheme, Host header, path, query), as uvicorn saw it. GET and POST reach the
handler, which allows GET only for the kinds the carrier fetches that way (wait, ringback.wav).
Stripe's webhook (POST /billing/stripe) and Checkout's return page (GET /billing/return) go to
talkturo.webhooks.billing, as the billing-webhook Lambda serves them.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from talkturo.webhooks import billing, carrier

PREFIX = "/carrier/"
BILLING_PREFIX = "/billing/"
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


async def _stripe(request: Request) -> Response:
    body = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    answer = await run_in_threadpool(billing.handle, headers, body)
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


async def _return(request: Request) -> Response:
    answer = billing.return_page(dict(request.query_params))
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


def create_webhook_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/carrier/{kind}", _webhook, methods=["POST", "GET"]),
            Route(billing.WEBHOOK_PATH, _stripe, methods=["POST"]),
            Route(billing.RETURN_PATH, _return, methods=["GET"]),
        ]
    )


def with_carrier_webhooks(api: ASGIApp) -> ASGIApp:
    """`api` for every path but /carrier/* and /billing/*, which go to the webhook app."""
    webhooks = create_webhook_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and path.startswith((PREFIX, BILLING_PREFIX)):
            await webhooks(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app
