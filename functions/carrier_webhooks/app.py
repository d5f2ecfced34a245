"""Lambda entry of the carrier webhooks (POST /carrier/voice, /carrier/status, /carrier/amd,
/carrier/transfer, /carrier/transfer-leg; GET or POST /carrier/wait; GET /carrier/ringback.wav).

Thin by design: rebuild the URL the carrier called from API Gateway's event (Host,
X-Forwarded-Proto and -Port headers, rawPath, rawQueryString), decode the form body, hand them
to talkturo.webhooks.carrier.handle (which checks the signature first) and shape its answer
(a binary answer, the ringback WAV, goes back base64-encoded, as API Gateway expects).
"""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from talkturo.logs import logger


def carrier_url(event: dict[str, Any]) -> str:
    from talkturo.webhooks.carrier import request_url

    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    context = event.get("requestContext") or {}
    host = headers.get("host") or context.get("domainName") or ""
    return request_url(
        scheme=(headers.get("x-forwarded-proto") or "https").split(",")[0].strip(),
        host=host,
        port=(headers.get("x-forwarded-port") or "").split(",")[0].strip() or None,
        path=event.get("rawPath") or "/",
        query=event.get("rawQueryString") or "",
    )


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from talkturo.webhooks.carrier import handle

    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    path = str(event.get("rawPath") or "")
    kind = path.rstrip("/").rsplit("/", 1)[-1]
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "POST")
    answer = handle(kind, url=carrier_url(event), method=method, headers=headers, body=body)
    if isinstance(answer.body, bytes):
        return {
            "statusCode": answer.status,
            "headers": {"Content-Type": answer.content_type},
            "body": base64.b64encode(answer.body).decode(),
            "isBase64Encoded": True,
        }
    return {
        "statusCode": answer.status,
        "headers": {"Content-Type": answer.content_type},
        "body": answer.body,
    }
