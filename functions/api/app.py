"""Lambda entry of the HTTP API: the FastAPI app behind Mangum.

Nothing is built at import: the first request builds only the routes it needs (LazyApi), so a
cold start stays short, and tests can set the environment first. The HTTP API serves its
`$default` stage, so request paths reach the app as clients wrote them (`/v1/...`).
"""

from __future__ import annotations

from typing import Any

_handler: Any = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    if _handler is None:
        from mangum import Mangum

        from talkturo.api.app import LazyApi

        _handler = Mangum(LazyApi(), lifespan="off")
    from talkturo.api.idempotency import lambda_context

    token = lambda_context.set(context)
    try:
        result: dict[str, Any] = _handler(event, context)
    finally:
        lambda_context.reset(token)
    return result
