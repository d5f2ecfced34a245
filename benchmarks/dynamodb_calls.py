"""How many DynamoDB calls one API request makes, route by route.

Counts every botocore call on the shared pynamodb connection's client and on the idempotency
utility's boto3 client, through botocore's `before-call.dynamodb.*` event. As a cross-check,
every DynamoDB call of any botocore client is counted too; a call that went through another
client (a model that opened its own connection…) is reported. Requests go through the real app
(in process) against the emulator. Routes that do not exist yet (404) are skipped.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from benchmarks._aws import local_aws, sign_up


@dataclass
class Counter:
    operations: list[str] = field(default_factory=list)

    def __call__(self, model: Any = None, **kwargs: Any) -> None:
        self.operations.append(getattr(model, "name", "?"))

    def take(self) -> list[str]:
        taken, self.operations = self.operations, []
        return taken


@dataclass
class Step:
    method: str
    path: str
    body: dict[str, Any] | None = None
    idempotency_key: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}" + (" (Idempotency-Key)" if self.idempotency_key else "")


# In order: creating requests come before the lists, so the lists are not empty.
STEPS = [
    Step("GET", "/v1/account"),
    Step("GET", "/v1/credits"),
    Step("GET", "/v1/credits/ledger"),
    Step("GET", "/v1/credits/usage"),
    Step("GET", "/v1/credits/usage?group_by=assistant"),
    Step("POST", "/v1/api-keys", {"name": "bench"}),
    Step("POST", "/v1/api-keys", {"name": "bench-idem"}, idempotency_key=True),
    Step("GET", "/v1/api-keys"),
    Step("POST", "/v1/companies", {"name": "Acme Dental"}),
    Step("GET", "/v1/companies"),
    Step(
        "POST",
        "/v1/contacts",
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "phone": "+14155550123",
        },
    ),
    Step("GET", "/v1/contacts"),
    Step("POST", "/v1/assistants", {"name": "Receptionist"}),
    Step("GET", "/v1/assistants"),
    Step("GET", "/v1/phone-numbers"),
    Step("GET", "/v1/calls"),
]


def _summary(operations: list[str]) -> str:
    counted = collections.Counter(operations)
    return ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(counted.items()))


def _route_missing(answer: Any) -> bool:
    """No such route (yet): the router's own 404/405, not a resource's 404."""
    if answer.status_code not in (404, 405):
        return False
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return True
    return code in ("not_found", "method_not_allowed")


@contextlib.contextmanager
def every_dynamodb_call() -> Iterator[list[tuple[int, str]]]:
    """(client id, operation) of each DynamoDB call any botocore client makes meanwhile."""
    from botocore.client import BaseClient

    seen: list[tuple[int, str]] = []
    original = BaseClient._make_api_call

    def counting(self: Any, operation_name: str, api_params: Any) -> Any:
        if self.meta.service_model.service_name == "dynamodb":
            seen.append((id(self), operation_name))
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def run() -> None:
    from fastapi.testclient import TestClient

    from talkturo import aws
    from talkturo.api.app import create_app
    from talkturo.store import table

    print("\nDynamoDB calls per API request (in process, against the emulator)\n")
    with local_aws("talkturo-bench-calls"), every_dynamodb_call() as everything:
        _account, key = sign_up("Calls bench")
        shared = Counter()
        table.connection().connection.client.meta.events.register("before-call.dynamodb.*", shared)
        aws.client("dynamodb").meta.events.register("before-call.dynamodb.*", shared)
        headers = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app()) as api:
            # The first request of a key also records its last use (at most once a minute);
            # make it here so the figures below are the steady state.
            everything.clear()
            api.get("/v1/account", headers=headers)
            first = [operation for _, operation in everything]
            shared.take()
            rows: list[tuple[str, str, str, str, str]] = []
            skipped: list[str] = []
            for n, step in enumerate(STEPS):
                request_headers = dict(headers)
                if step.idempotency_key:
                    request_headers["Idempotency-Key"] = f"bench-{n}"
                everything.clear()
                answer = api.request(
                    step.method, step.path, json=step.body, headers=request_headers
                )
                operations = [operation for _, operation in everything]
                via_shared = shared.take()
                if _route_missing(answer):
                    skipped.append(step.label)
                    continue
                status = str(answer.status_code)
                if answer.status_code >= 400:
                    error = answer.json().get("error", {})
                    status += f" ({error.get('message', '')[:40]})"
                rows.append(
                    (
                        step.label,
                        status,
                        str(len(operations)),
                        str(len(via_shared)),
                        _summary(operations),
                    )
                )
            clients = {client for client, _ in everything}
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'route':{width}}{'status':<8}{'calls':>6}{'shared':>8}  operations")
    for label, status, calls, via_shared_calls, operations in rows:
        print(f"{label:{width}}{status:<8}{calls:>6}{via_shared_calls:>8}  {operations}")
    print(
        "\n  calls: every DynamoDB call of the request, whatever botocore client made it."
        "\n  shared: those made on the shared pynamodb connection (store.table.connection())"
        "\n  or the idempotency client; the rest went through a client of its own."
        f"\n  A key's first request in a minute also records its last use: {len(first)} calls"
        f" ({_summary(first)}) for GET /v1/account."
    )
    if skipped:
        print(f"  Skipped (route not built yet: 404): {', '.join(skipped)}")
    print(f"  DynamoDB clients used by the last request: {len(clients)}.")
