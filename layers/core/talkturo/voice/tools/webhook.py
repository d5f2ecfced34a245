"""Webhook tools: a customer's HTTPS endpoint the model may call mid-conversation.

The request (always through `http_guard`, so private and local addresses are refused):
- GET: the arguments as query parameters (strings as given, numbers and booleans as JSON text,
  lists of scalars as repeated parameters, objects as JSON text).
- POST / PUT / PATCH / DELETE: a JSON body
  `{"arguments": {...}, "call": {"id": ..., "assistant_id": ..., ...}}`.
- The configured headers, `User-Agent: Talkturo-Webhook/1`, and, when a signing secret is set:

      X-Talkturo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>

  where `<payload>` is the request body exactly as sent (UTF-8 JSON) or, for GET, the query
  string exactly as sent (the part after `?`, empty when there is none). A receiver recomputes
  the HMAC over the raw bytes, compares in constant time, and refuses old `t` values (replays).

The result is what the model reads: `{"status": <HTTP status>, "body": <parsed JSON or text>}`
(plus `"truncated": true` when the body was cut), or `{"error": "..."}` when the arguments do not
match the tool's schema (nothing is sent), the address is refused, the endpoint does not answer
in time or cannot be reached. Nothing here raises for those: the assistant speaks from the result.

Secrets (header values, the signing secret) never appear in results or logs; a response that
echoes one back has it replaced by `[redacted]`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

from talkturo.domain.assistant_tools import WebhookConfig
from talkturo.http_guard import (
    BlockedDestination,
    OutboundHttpError,
    OutboundPolicy,
    OutboundTimeout,
    Resolver,
    guarded_request,
)
from talkturo.logs import logger
from talkturo.voice.providers.base import ToolSpec

SIGNATURE_HEADER = "X-Talkturo-Signature"
USER_AGENT = "Talkturo-Webhook/1"
# What the model reads back: enough for an answer, small enough for the conversation.
MAX_RESPONSE_BYTES = 16_384
MAX_ERRORS_SHOWN = 3
# Shorter values (a version number, "true") are too common to redact from a body.
MIN_REDACTED_LENGTH = 8


def spec_of(config: WebhookConfig) -> ToolSpec:
    return ToolSpec(name=config.name, description=config.description, parameters=config.parameters)


def signature(secret: str, timestamp: int, payload: bytes) -> str:
    """The X-Talkturo-Signature value for `payload` signed at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _argument_errors(schema: dict[str, Any], arguments: Any) -> list[str]:
    # An empty registry: jsonschema's default one fetches remote `$ref`s over the network,
    # which would be a request to an unchecked, customer-chosen address.
    validator = Draft202012Validator(schema, registry=Registry())
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    shown = []
    for error in errors[:MAX_ERRORS_SHOWN]:
        where = "/".join(str(part) for part in error.absolute_path)
        shown.append(f"{where}: {error.message}" if where else error.message)
    return shown


def _query_value(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(item, str | int | float | bool) or item is None for item in value
    ):
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _secrets(config: WebhookConfig) -> list[bytes]:
    values = [secret.get_secret_value() for secret in config.headers.values()]
    if config.secret is not None:
        values.append(config.secret.get_secret_value())
    found = {v.encode() for v in values if len(v) >= MIN_REDACTED_LENGTH}
    return sorted(found, key=len, reverse=True)


def _readable(body: bytes, truncated: bool, content_type: str) -> Any:
    """Parsed JSON when the whole body is JSON, otherwise text."""
    text = body.decode("utf-8", errors="replace")
    if not truncated and ("json" in content_type or text.lstrip()[:1] in ("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


async def call_webhook(
    config: WebhookConfig,
    arguments: dict[str, Any],
    *,
    call: dict[str, str],
    policy: OutboundPolicy | None = None,
    resolver: Resolver | None = None,
) -> dict[str, Any]:
    """Call the webhook with the model's arguments; the result the model reads next."""
    try:
        problems = _argument_errors(config.parameters, arguments)
    except (SchemaError, Unresolvable):
        return {"error": "this tool's parameter schema is invalid; it cannot be called"}
    if problems:
        return {"error": "invalid arguments: " + "; ".join(problems)}

    try:
        target = httpx.URL(config.url)
        if config.method == "GET" and arguments:
            target = target.copy_merge_params({k: _query_value(v) for k, v in arguments.items()})
    except httpx.InvalidURL:
        return {"error": "the webhook's URL is not valid"}
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    if not any(name.lower() == "user-agent" for name in headers):
        headers["User-Agent"] = USER_AGENT
    content: bytes | None = None
    if config.method == "GET":
        payload = target.query
    else:
        content = json.dumps(
            {"arguments": arguments, "call": call}, separators=(",", ":"), ensure_ascii=False
        ).encode()
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/json"
        payload = content
    if config.secret is not None:
        headers = {k: v for k, v in headers.items() if k.lower() != SIGNATURE_HEADER.lower()}
        headers[SIGNATURE_HEADER] = signature(
            config.secret.get_secret_value(), int(time.time()), payload
        )

    started = time.monotonic()
    log = {"tool": config.name, "host": target.host, "call_id": call.get("id")}
    try:
        response = await guarded_request(
            config.method,
            str(target),
            headers=headers,
            content=content,
            timeout=config.timeout_seconds,
            max_bytes=MAX_RESPONSE_BYTES,
            policy=policy,
            resolver=resolver,
        )
    except BlockedDestination as error:
        logger.warning("webhook tool refused", extra={**log, "reason": error.reason})
        return {"error": "the webhook's address is not allowed (only public https endpoints)"}
    except OutboundTimeout:
        logger.warning("webhook tool timed out", extra=log)
        seconds = config.timeout_seconds
        return {
            "error": f"the webhook did not answer within {seconds} second{'s' * (seconds != 1)}"
        }
    except OutboundHttpError as error:
        logger.warning("webhook tool failed", extra={**log, "reason": error.reason})
        return {"error": "the webhook could not be reached"}

    body = response.body
    for secret in _secrets(config):
        body = body.replace(secret, b"[redacted]")
    elapsed_ms = int((time.monotonic() - started) * 1000)
    logger.info("webhook tool answered", extra={**log, "status": response.status, "ms": elapsed_ms})
    result: dict[str, Any] = {
        "status": response.status,
        "body": _readable(body, response.truncated, response.headers.get("content-type", "")),
    }
    if response.truncated:
        result["truncated"] = True
    return result
