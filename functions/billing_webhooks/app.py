"""Lambda entry of Stripe's webhook (POST /billing/stripe) and Checkout's return page
(GET /billing/return).

Thin by design: the raw body (base64-decoded when API Gateway encoded it) and the headers go
to talkturo.webhooks.billing.handle, which verifies the Stripe-Signature before reading
anything, stores the event once and queues it for the billing worker.
"""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.logs import logger


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from talkturo.webhooks import billing

    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "POST")
    if method == "GET":
        answer = billing.return_page(event.get("queryStringParameters") or {})
    else:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        raw = event.get("body") or ""
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
        answer = billing.handle(headers, body)
    return {
        "statusCode": answer.status,
        "headers": {"Content-Type": answer.content_type},
        "body": answer.body,
    }
