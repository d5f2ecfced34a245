"""Customer events end to end against the emulator: endpoints through the API, emit, the
delivery worker (the deployed handler) posting to a receiver on loopback, signatures verified
with the `standardwebhooks` package, retries, disabling, the delivery log, replay."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from talkturo import config
from talkturo.domain.common import utcnow
from talkturo.domain.events import DeliveryJob
from talkturo.local.template import Stack
from talkturo.services import events
from tests.asgi_server import served
from tests.conftest import Tenant
from tests.integration import event_queue

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """A customer's endpoint: records what arrives, answers the statuses it is told to."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.seen.append({"headers": dict(request.headers), "body": body.decode()})
            self.arrived.set()
            if self.hold is not None:
                import asyncio

                await asyncio.to_thread(self.hold.wait, 10)
            status = self.statuses.pop(0) if self.statuses else 200
            return Response(content=b'{"ok": true}', status_code=status)

        @app.post("/moved")
        async def moved() -> Response:
            return RedirectResponse(f"{self.url}/private", status_code=302)

        @app.api_route("/private", methods=["GET", "POST"])
        async def private() -> Response:
            self.seen.append({"private": True})
            return Response(status_code=200)

        return app


@pytest.fixture
def receiver(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    # As the local platform does: plain http to loopback only (the event inbox).
    monkeypatch.setenv("TALKTURO_OUTBOUND_ALLOW_HTTP", "127.0.0.0/8")
    config.get_settings.cache_clear()
    box = Receiver()
    with served(box.app()) as url:
        box.url = url
        yield box


def _endpoint(client: TestClient, tenant: Tenant, url: str, **extra: Any) -> dict[str, Any]:
    answer = client.post(
        "/v1/webhook-endpoints", json={"url": url, **extra}, headers=tenant.headers
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _deliveries(client: TestClient, tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def _job(delivery: dict[str, Any], tenant: Tenant, attempt: int) -> str:
    return DeliveryJob(
        account_id=tenant.account_id,
        endpoint_id=delivery["endpoint_id"],
        delivery_id=delivery["id"],
        attempt=attempt,
    ).model_dump_json()


# --------------------------------------------------------------------------- emit


def test_emit_without_an_endpoint_writes_nothing_and_queues_nothing(
    stack: Stack, tenant: Tenant
) -> None:
    assert events.emit(tenant.account_id, "credits.low", {"balance": "1"}, key="k1") is None
    assert event_queue.receive(stack) == []


def test_an_event_arrives_signed_and_verifies_with_standardwebhooks(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    # Given an endpoint
    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook", description="crm")
    assert endpoint["secret"].startswith("whsec_")
    # When an event is emitted and the worker runs
    event_id = events.emit(
        tenant.account_id, "call.started", {"call": {"id": "call_1"}}, key="call.started:call_1"
    )
    assert event_id is not None and event_id.startswith("evt_")
    assert len(event_queue.drain(stack)) == 1
    # Then it arrived once, signed: the package verifies it with the endpoint's secret
    (request,) = receiver.seen
    payload = Webhook(endpoint["secret"]).verify(request["body"], request["headers"])
    assert payload["id"] == event_id == request["headers"]["webhook-id"]
    assert payload["type"] == "call.started"
    assert payload["data"] == {"call": {"id": "call_1"}}
    assert set(payload) == {"id", "type", "created_at", "data"}
    # And the log shows the attempt
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["status"] == "delivered"
    assert delivery["attempt_count"] == 1
    (attempt,) = delivery["attempts"]
    assert attempt["response_status"] == 200
    assert attempt["response_body_excerpt"] == '{"ok": true}'
    assert attempt["request_headers"]["webhook-id"] == event_id
    assert delivery["request_body"] == request["body"]


def test_the_same_key_emitted_twice_is_one_event(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook")
    first = events.emit(tenant.account_id, "call.ended", {"n": 1}, key="call.ended:call_9")
    second = events.emit(tenant.account_id, "call.ended", {"n": 2}, key="call.ended:call_9")
    assert first == second
    event_queue.drain(stack)
    assert len(receiver.seen) == 1
    assert json.loads(receiver.seen[0]["body"])["data"] == {"n": 1}
    assert len(_deliveries(client, tenant, endpoint["id"])) == 1


def test_an_endpoint_gets_only_the_types_it_asked_for(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    _endpoint(client, tenant, f"{receiver.url}/hook", event_types=["credits.low"])
    assert events.emit(tenant.account_id, "call.started", {}, key="a") is None
    assert events.emit(tenant.account_id, "credits.low", {}, key="b") is not None
    event_queue.drain(stack)
    assert [json.loads(r["body"])["type"] for r in receiver.seen] == ["credits.low"]


def test_a_message_delivered_twice_makes_one_attempt(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    _endpoint(client, tenant, f"{receiver.url}/hook")
    events.emit(tenant.account_id, "credits.low", {}, key="twice")
    ((body, _),) = event_queue.receive(stack)
    assert event_queue.invoke(stack, [body, body]) == {"batchItemFailures": []}
    assert len(receiver.seen) == 1


# --------------------------------------------------------------------------- retries


def test_a_500_is_retried_with_the_same_webhook_id_until_it_is_delivered(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook")
    receiver.statuses = [500, 503]
    events.emit(tenant.account_id, "credits.low", {}, key="retry")
    event_queue.drain(stack)
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["status"] == "pending"
    assert delivery["last_error"] == "the endpoint answered 500"
    # The 5 s retry is an SQS delay: here its message is handed in as it would arrive.
    assert event_queue.invoke(stack, [_job(delivery, tenant, 1)]) == {"batchItemFailures": []}
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["status"] == "pending" and delivery["attempt_count"] == 2
    # The 5 min wait is in the table: the sweeper queues it once it is due, not before.
    assert events.sweep(utcnow() + timedelta(seconds=60)) == 0
    assert events.sweep(utcnow() + timedelta(seconds=301)) == 1
    event_queue.drain(stack)
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["status"] == "delivered"
    assert [a["response_status"] for a in delivery["attempts"]] == [500, 503, 200]
    ids = {r["headers"]["webhook-id"] for r in receiver.seen}
    assert len(receiver.seen) == 3 and len(ids) == 1
    for request in receiver.seen:
        Webhook(endpoint["secret"]).verify(request["body"], request["headers"])


def test_a_timeout_is_a_failed_attempt_retried_later(
    client: TestClient,
    stack: Stack,
    tenant: Tenant,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook")
    monkeypatch.setattr(events, "REQUEST_TIMEOUT_SECONDS", 0.5)
    receiver.hold = threading.Event()
    try:
        events.emit(tenant.account_id, "credits.low", {}, key="slow")
        event_queue.drain(stack)
    finally:
        receiver.hold.set()
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["status"] == "pending"
    (attempt,) = delivery["attempts"]
    assert attempt["response_status"] is None
    assert attempt["error"].startswith("timeout")


def test_the_schedule_ends_failed_after_eight_attempts(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook")
    receiver.statuses = [500] * 8
    events.emit(tenant.account_id, "credits.low", {}, key="doomed")
    event_queue.drain(stack)
    for attempt in range(1, 8):
        (delivery,) = _deliveries(client, tenant, endpoint["id"])
        assert delivery["status"] == "pending"
        event_queue.invoke(stack, [_job(delivery, tenant, attempt)])
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["status"] == "failed" and delivery["attempt_count"] == 8
    assert delivery["next_attempt_at"] is None
    assert events.sweep(utcnow() + timedelta(days=3)) == 0


def test_410_disables_the_endpoint_at_once(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook")
    receiver.statuses = [410]
    events.emit(tenant.account_id, "credits.low", {}, key="gone")
    event_queue.drain(stack)
    shown = client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers).json()
    assert shown["enabled"] is False and shown["disabled_reason"] == "gone"
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["status"] == "failed"
    # Nothing more is sent to it; enabling it again clears the reason.
    assert events.emit(tenant.account_id, "credits.low", {}, key="after") is None
    again = client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}, headers=tenant.headers
    ).json()
    assert again["enabled"] is True and again["disabled_reason"] is None


def test_an_endpoint_failing_for_five_days_is_disabled(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    from talkturo.store import events as event_store

    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook")
    receiver.statuses = [500, 500]
    events.emit(tenant.account_id, "credits.low", {}, key="first")
    event_queue.drain(stack)
    record, version = event_store.get_endpoint(tenant.account_id, endpoint["id"])
    assert record.failing_since is not None and record.enabled
    # Given its first failure five days ago
    event_store.save_endpoint(
        tenant.account_id,
        record.model_copy(update={"failing_since": utcnow() - timedelta(days=5, minutes=1)}),
        version,
    )
    events.emit(tenant.account_id, "credits.low", {}, key="second")
    event_queue.drain(stack)
    shown = client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers).json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "failing"
    assert "every attempt failed since" in shown["disabled_message"]


def test_a_success_clears_failing_since(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, tenant, f"{receiver.url}/hook")
    receiver.statuses = [500]
    events.emit(tenant.account_id, "credits.low", {}, key="one")
    event_queue.drain(stack)
    assert client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers).json()[
        "failing_since"
    ]
    events.emit(tenant.account_id, "credits.low", {}, key="two")
    event_queue.drain(stack)
    shown = client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers).json()
    assert shown["failing_since"] is None


def test_a_lost_message_is_found_by_the_sweeper(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    import boto3

    _endpoint(client, tenant, f"{receiver.url}/hook")
    events.emit(tenant.account_id, "credits.low", {}, key="lost")
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.purge_queue(QueueUrl=stack.physical["EventQueue"])
    assert events.sweep(utcnow()) == 0  # its message may still be on the way
    assert events.sweep(utcnow() + timedelta(minutes=2)) == 1
    event_queue.drain(stack)
    assert len(receiver.seen) == 1


# --------------------------------------------------------------------------- redirects, SSRF


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    client: TestClient, stack: Stack, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = _endpoint(client, tenant, f"{receiver.url}/moved")
    events.emit(tenant.account_id, "credits.low", {}, key="moved")
    event_queue.drain(stack)
    (delivery,) = _deliveries(client, tenant, endpoint["id"])
    assert delivery["attempts"][0]["response_status"] == 302
    assert delivery["status"] == "pending"
    assert receiver.seen == []  # the location was never contacted
