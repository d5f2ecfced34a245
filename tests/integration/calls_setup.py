"""Shared set-up for call tests: an assistant answering an active number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from talkturo.local.template import Stack
from tests.conftest import Tenant
from tests.integration import number_queue


@dataclass
class Line:
    assistant_id: str
    number_id: str
    phone_number: str


def assistant(client: TestClient, tenant: Tenant, **telephony: Any) -> str:
    body: dict[str, Any] = {"template": "custom"}
    if telephony:
        body["telephony"] = telephony
    made = client.post("/v1/assistants", json=body, headers=tenant.headers)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def line(
    client: TestClient, stack: Stack, tenant: Tenant, phone_number: str, **telephony: Any
) -> Line:
    """An assistant with `phone_number` bought (the current carrier), active and assigned."""
    assistant_id = assistant(client, tenant, **telephony)
    bought = client.post(
        "/v1/phone-numbers", json={"phone_number": phone_number}, headers=tenant.headers
    )
    assert bought.status_code == 202, bought.text
    number_queue.drain(stack)
    number_id = bought.json()["id"]
    assigned = client.post(
        f"/v1/phone-numbers/{number_id}/assign",
        json={"assistant_id": assistant_id},
        headers=tenant.headers,
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["status"] == "active"
    return Line(assistant_id, number_id, phone_number)
