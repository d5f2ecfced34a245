"""Lambda entry of the HTTP API: the FastAPI app behind Mangum.

The app is built on the first request rather than at import, so importing this module is cheap
and tests can set the environment first. The HTTP API serves its `$default` stage, so request
paths reach the app as clients wrote them (`/v1/...`).
"""

from __future__ import annotations

from typing import Any

_handler: Any = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    if _handler is None:
        from mangum import Mangum

        from talkturo.api.app import create_app

        _handler = Mangum(create_app(), lifespan="off")
    from talkturo.api.idempotency import lambda_context

    token = lambda_context.set(context)
    try:
        result: dict[str, Any] = _handler(event, context)
    finally:
        lambda_context.reset(token)
    return result
