"""Webhook tools end to end against a local endpoint: what is sent, how it is signed, what the
model reads back, and the failures it reads instead of an exception."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from talkturo.domain.assistant_tools import WebhookConfig
from talkturo.http_guard import OutboundPolicy
from talkturo.voice.tools.webhook import call_webhook, spec_of
from tests.asgi_server import served

POLICY = OutboundPolicy(
    require_https=False, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)
)
SIGNING_SECRET = "whsec_0123456789abcdef"
API_KEY = "sk_live_abcdefghijklmnop"
CALL = {"id": "call_01J0TEST", "assistant_id": "asst_01J0TEST", "direction": "inbound"}
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["order_id"],
}


def _app(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    async def record(request: Request) -> dict[str, Any]:
        entry = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "params": dict(request.query_params.multi_items()),
            "tags": request.query_params.getlist("tags"),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": await request.body(),
        }
        seen.append(entry)
        return entry

    @app.api_route("/orders", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def orders(request: Request) -> JSONResponse:
        await record(request)
        return JSONResponse({"order": "A-1", "status": "shipped"})

    @app.post("/echo-headers")
    async def echo(request: Request) -> JSONResponse:
        entry = await record(request)
        return JSONResponse({"you_sent": entry["headers"]})

    @app.post("/text")
    async def text(request: Request) -> PlainTextResponse:
        await record(request)
        return PlainTextResponse("out of stock", status_code=409)

    @app.post("/huge")
    async def huge(request: Request) -> Response:
        await record(request)
        return Response(json.dumps({"items": ["x" * 100] * 1000}), media_type="application/json")

    @app.get("/schema.json")
    async def schema(request: Request) -> JSONResponse:
        await record(request)
        return JSONResponse({"type": "integer"})

    return app


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with served(_app(seen)) as base:
        yield base, seen


def _config(url: str, **fields: Any) -> WebhookConfig:
    base: dict[str, Any] = {
        "name": "lookup_order",
        "description": "Look up an order by its id.",
        "parameters": ORDER_SCHEMA,
        "url": url,
    }
    return WebhookConfig.model_validate({**base, **fields})


def _call(config: WebhookConfig, arguments: Any, policy: OutboundPolicy | None = POLICY) -> Any:
    return asyncio.run(call_webhook(config, arguments, call=CALL, policy=policy))


def _verify(header: str, secret: str, payload: bytes) -> int:
    """What a receiver does: recompute, compare in constant time; the signing time."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + payload, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    return int(parts["t"])


def test_spec_is_what_the_model_sees() -> None:
    spec = spec_of(_config("https://hooks.example.com/orders"))
    assert (spec.name, spec.description, spec.parameters) == (
        "lookup_order",
        "Look up an order by its id.",
        ORDER_SCHEMA,
    )


def test_post_sends_arguments_and_call_signed(endpoint: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = endpoint
    config = _config(
        base + "/orders",
        headers={"Authorization": f"Bearer {API_KEY}", "X-Tenant": "acme"},
        secret=SIGNING_SECRET,
    )
    result = _call(config, {"order_id": "A-1", "limit": 2})
    assert result == {"status": 200, "body": {"order": "A-1", "status": "shipped"}}

    request = seen[-1]
    assert request["method"] == "POST"
    assert json.loads(request["body"]) == {
        "arguments": {"order_id": "A-1", "limit": 2},
        "call": CALL,
    }
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["headers"]["x-tenant"] == "acme"
    signed_at = _verify(request["headers"]["x-talkturo-signature"], SIGNING_SECRET, request["body"])
    assert abs(signed_at - time.time()) < 60
    with pytest.raises(AssertionError):  # another secret does not verify
        _verify(
            request["headers"]["x-talkturo-signature"], "whsec_wrong_wrong_wrong", request["body"]
        )


def test_get_sends_arguments_as_query_parameters(
    endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = endpoint
    schema = {
        "type": "object",
        "properties": {
            "q": {"type": "string"},
            "limit": {"type": "integer"},
            "in_stock": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    config = _config(base + "/orders", method="GET", parameters=schema, secret=SIGNING_SECRET)
    arguments = {"q": "blue shoes", "limit": 3, "in_stock": True, "tags": ["a", "b"]}
    assert _call(config, arguments)["status"] == 200

    request = seen[-1]
    assert request["method"] == "GET"
    assert request["body"] == b""
    assert request["params"]["q"] == "blue shoes"
    assert request["params"]["limit"] == "3"
    assert request["params"]["in_stock"] == "true"
    assert request["tags"] == ["a", "b"]
    # For GET the signed payload is the query string exactly as sent.
    _verify(request["headers"]["x-talkturo-signature"], SIGNING_SECRET, request["query"].encode())


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_send_a_json_body(
    method: str, endpoint: tuple[str, list[dict[str, Any]]]
) -> None:
    base, seen = endpoint
    assert _call(_config(base + "/orders", method=method), {"order_id": "B-2"})["status"] == 200
    assert seen[-1]["method"] == method
    assert json.loads(seen[-1]["body"])["arguments"] == {"order_id": "B-2"}
    assert "x-talkturo-signature" not in seen[-1]["headers"]  # no secret, no signature


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({}, "'order_id' is a required property"),
        ({"order_id": 7}, "order_id: 7 is not of type 'string'"),
        ({"order_id": "A", "limit": "two"}, "limit: 'two' is not of type 'integer'"),
        ("A-1", "is not of type 'object'"),
    ],
)
def test_invalid_arguments_are_answered_without_a_request(
    arguments: Any, complaint: str, endpoint: tuple[str, list[dict[str, Any]]]
) -> None:
    base, seen = endpoint
    before = len(seen)
    result = _call(_config(base + "/orders"), arguments)
    assert result["error"].startswith("invalid arguments: ")
    assert complaint in result["error"]
    assert len(seen) == before


def test_a_remote_schema_reference_is_never_fetched(
    endpoint: tuple[str, list[dict[str, Any]]],
) -> None:
    base, seen = endpoint
    before = len(seen)
    # Stored configurations are not re-checked on read, so the tool must not trust them.
    schema = {"type": "object", "properties": {"n": {"$ref": f"{base}/schema.json"}}}
    result = _call(_config(base + "/orders", parameters=schema), {"n": 1})
    assert "error" in result
    assert len(seen) == before


def test_response_text_status_and_truncation(endpoint: tuple[str, list[dict[str, Any]]]) -> None:
    base, _ = endpoint
    assert _call(_config(base + "/text"), {"order_id": "A"}) == {
        "status": 409,
        "body": "out of stock",
    }
    huge = _call(_config(base + "/huge"), {"order_id": "A"})
    assert huge["status"] == 200 and huge["truncated"] is True
    assert isinstance(huge["body"], str) and len(huge["body"]) == 16_384


def test_secrets_never_reach_the_result_or_the_logs(
    endpoint: tuple[str, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    base, _ = endpoint
    config = _config(
        base + "/echo-headers",
        headers={"Authorization": f"Bearer {API_KEY}"},
        secret=SIGNING_SECRET,
    )
    result = _call(config, {"order_id": "A"})
    assert result["status"] == 200
    assert result["body"]["you_sent"]["authorization"] == "[redacted]"
    blocked = _call(
        _config("https://10.0.0.1/x", headers={"Authorization": API_KEY}), {"order_id": "A"}
    )
    assert "error" in blocked
    logged = [record.__dict__ for record in caplog.records]
    assert {"webhook tool answered", "webhook tool refused"} <= {r["msg"] for r in logged}
    text = json.dumps([result, blocked]) + repr(logged)
    assert API_KEY not in text
    assert SIGNING_SECRET not in text


def test_refused_destinations_are_error_results(
    endpoint: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, seen = endpoint
    monkeypatch.delenv("TALKTURO_OUTBOUND_ALLOW", raising=False)
    before = len(seen)
    for url in (base + "/orders", "https://169.254.169.254/latest/meta-data/"):
        result = _call(_config(url), {"order_id": "A"}, policy=None)
        assert result == {
            "error": "the webhook's address is not allowed (only public https endpoints)"
        }
    assert len(seen) == before


def test_a_slow_webhook_is_a_timeout_result() -> None:
    async def scenario() -> tuple[dict[str, Any], float]:
        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = _config(f"http://127.0.0.1:{port}/orders", timeout_seconds=1)
        started = time.monotonic()
        try:
            result = await call_webhook(config, {"order_id": "A"}, call=CALL, policy=POLICY)
        finally:
            server.close()
        return result, time.monotonic() - started

    result, elapsed = asyncio.run(scenario())
    assert result == {"error": "the webhook did not answer within 1 second"}
    assert elapsed < 3


def test_an_unreachable_webhook_is_an_error_result() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _call(_config(f"http://127.0.0.1:{port}/orders"), {"order_id": "A"})
    assert result == {"error": "the webhook could not be reached"}


def test_a_stored_url_that_does_not_parse_is_an_error_result() -> None:
    # Stored configurations are not re-validated on read.
    result = _call(_config("https://hooks.example.com:port/orders"), {"order_id": "A"})
    assert result == {"error": "the webhook's URL is not valid"}
