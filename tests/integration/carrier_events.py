"""Signed carrier webhooks as API Gateway (HTTP API, payload 2.0) hands them to the Lambda."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from talkturo.local.template import PROJECT_ROOT
from tests.integration.lambda_worker import LambdaContext

HANDLER_PATH = PROJECT_ROOT / "functions" / "carrier_webhooks" / "app.py"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
HOST = "abc123.execute-api.us-east-1.amazonaws.com"


@lru_cache(maxsize=1)
def module() -> Any:
    spec = importlib.util.spec_from_file_location("carrier_webhooks_app", HANDLER_PATH)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def event(
    kind: str,
    params: dict[str, str],
    *,
    query: str = "",
    signature: str | None = "sign",
    proto: str = "https",
    port: str = "443",
    host: str = HOST,
    signed_url: str | None = None,
) -> dict[str, Any]:
    path = f"/carrier/{kind}"
    netloc = host if port in ("443", "80") else f"{host}:{port}"
    url = f"{proto}://{netloc}{path}" + (f"?{query}" if query else "")
    headers = {
        "host": host,
        "x-forwarded-proto": proto,
        "x-forwarded-port": port,
        "content-type": "application/x-www-form-urlencoded",
    }
    if signature == "sign":
        headers["x-twilio-signature"] = sign(signed_url or url, params)
    elif signature is not None:
        headers["x-twilio-signature"] = signature
    return {
        "version": "2.0",
        "routeKey": "POST /carrier/{proxy+}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {"domainName": host, "http": {"method": "POST", "path": path}},
        "body": urlencode(params),
        "isBase64Encoded": False,
    }


def call(kind: str, params: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    answer: dict[str, Any] = module().handler(event(kind, params, **kwargs), LambdaContext())
    return answer
