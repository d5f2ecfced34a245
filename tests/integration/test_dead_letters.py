"""Dead letters: a job that can never finish says so, and the operator can list them.

Every job is driven into its dead-letter queue for real (see dead_letter_queue): its worker
fails on every delivery until SQS's redrive moves the message, then the dead-letter worker,
fed from the template's event sources like every other function, ends the job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from talkturo import config
from talkturo.carrier.base import CarrierError
from talkturo.domain.common import utcnow
from talkturo.domain.contact_imports import ImportChunk
from talkturo.local.template import Stack
from talkturo.services import contact_imports, contacts, dead_letters
from talkturo.store import contacts as contact_store
from talkturo.store import numbers as number_store
from tests.asgi_server import served
from tests.conftest import Tenant
from tests.fake_carrier import FakeCarrier
from tests.integration import calls_setup
from tests.integration.dead_letter_queue import MAX_RECEIVES, Redrive

pytestmark = pytest.mark.integration

ADMIN = "an-admin-secret-for-dead-letter-tests"
NUMBER = "+14155550140"
CALLEE = "+14155550199"
REAL_CREATE = contacts.create
REAL_WRITE_TOGETHER = contact_store.write_together


class TableAway(Exception):
    """What a worker meets when something it needs keeps failing."""


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("TALKTURO_ADMIN_SECRET", ADMIN)
    config.get_settings.cache_clear()
    from talkturo.api import deps

    deps._admin_secret.cache_clear()
    yield {"Authorization": f"Bearer {ADMIN}"}
    deps._admin_secret.cache_clear()


@pytest.fixture
def redrive(stack: Stack) -> Redrive:
    return Redrive(stack)


def _busy(*args: Any, **kwargs: Any) -> Any:
    raise CarrierError("carrier busy", retryable=True)


def _listed(client: TestClient, admin: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/v1/admin/dead-letters", params=params, headers=admin)
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


# ---------------------------------------------------------------------------------- imports
def _import(client: TestClient, tenant: Tenant, rows: int) -> str:
    lines = ["first_name"] + [f"P{i}" for i in range(rows)]
    answer = client.post(
        "/v1/contact-imports",
        content="\n".join(lines).encode() + b"\n",
        headers={**tenant.headers, "Content-Type": "text/csv"},
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _failing_at(monkeypatch: pytest.MonkeyPatch, name: str, before: Any = None) -> None:
    """Writing the contact `name`, alone or with others, raises TableAway (or, with `before`,
    runs it first)."""

    def failing(first_names: list[str]) -> None:
        if name in first_names:
            if before is None:
                raise TableAway("the table is away")
            before()

    def create(account_id: str, data: Any, **options: Any) -> Any:
        failing([data.first_name])
        return REAL_CREATE(account_id, data, **options)

    def write_together(account_id: str, entries: Any) -> int:
        failing([contact.first_name for contact, *_ in entries])
        return REAL_WRITE_TOGETHER(account_id, entries)

    monkeypatch.setattr(contacts, "create", create)
    monkeypatch.setattr(contact_store, "write_together", write_together)


def _names(client: TestClient, tenant: Tenant) -> list[str]:
    page = client.get("/v1/contacts", params={"limit": 100}, headers=tenant.headers).json()
    return sorted(contact["first_name"] for contact in page["data"])


def test_an_import_whose_chunk_keeps_failing_ends_failed_with_the_rows_done(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    redrive: Redrive,
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an import of 7 rows in chunks of 2 whose 4th row always fails to write
    monkeypatch.setattr(contact_imports, "CHUNK_ROWS", 2)
    _failing_at(monkeypatch, "P3")
    import_id = _import(client, tenant, 7)

    # When the worker does chunks 1, 3 and 4, and fails chunk 2 on every delivery
    deliveries = redrive.exhaust("ContactImportQueue")
    assert deliveries == 3 + MAX_RECEIVES
    running = client.get(f"/v1/contact-imports/{import_id}", headers=tenant.headers).json()
    assert running["status"] == "processing"  # what it would stay forever without this
    # And the dead-letter worker takes the dead letter
    assert redrive.handle_dead_letters("ContactImportQueue") == 1

    # Then the import has ended failed, saying why, with every row done counted
    job = client.get(f"/v1/contact-imports/{import_id}", headers=tenant.headers).json()
    assert job["status"] == "failed"
    assert job["error"] == "chunk 2 of 4 failed after 5 attempts: TableAway"
    # (the other chunks' rows, and the row of chunk 2 done before the failing one)
    assert (job["processed_rows"], job["created"], job["failed"]) == (6, 6, 0)
    assert job["completed_at"] is not None
    assert _names(client, tenant) == ["P0", "P1", "P2", "P4", "P5", "P6"]
    # And nothing more is queued or waiting
    assert redrive.waiting("ContactImportQueue") == 0
    assert redrive.waiting("ContactImportDeadLetterQueue") == 0
    # And the operator sees the dead letter
    (letter,) = _listed(client, admin)
    assert letter["queue"] == "contact_import"
    assert letter["job"] == import_id
    assert letter["account_id"] == tenant.account_id
    assert letter["action"] == "ended"
    assert letter["reason"] == job["error"]
    assert letter["receive_count"] > MAX_RECEIVES
    assert letter["sent_at"] is not None
    assert datetime.fromisoformat(letter["sent_at"]) <= datetime.fromisoformat(letter["dead_at"])
    body = json.loads(letter["body_excerpt"])
    assert (body["account_id"], body["import_id"], body["start_row"]) == (
        tenant.account_id,
        import_id,
        2,
    )


def test_a_chunk_still_running_when_its_import_failed_keeps_its_counts_not_its_success(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    redrive: Redrive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an import of 4 rows in chunks of 2 whose chunk 2 dead-lettered
    monkeypatch.setattr(contact_imports, "CHUNK_ROWS", 2)
    _failing_at(monkeypatch, "P3")
    import_id = _import(client, tenant, 4)
    redrive.exhaust("ContactImportQueue")
    # When one more attempt at chunk 2 (the last) is running as the dead letter is handled:
    # it meets the failure halfway through, then does its rows
    _failing_at(monkeypatch, "P3", before=lambda: redrive.handle_dead_letters("ContactImportQueue"))
    contact_imports.process_chunk(
        ImportChunk(account_id=tenant.account_id, import_id=import_id, start_row=2)
    )

    # Then the import stays failed, with the reason, and the chunk's rows all counted once
    job = client.get(f"/v1/contact-imports/{import_id}", headers=tenant.headers).json()
    assert job["status"] == "failed"
    assert job["error"] == "chunk 2 of 2 failed after 5 attempts: TableAway"
    assert (job["processed_rows"], job["created"]) == (4, 4)
    assert _names(client, tenant) == ["P0", "P1", "P2", "P3"]
    # And a later chunk message changes nothing
    contact_imports.process_chunk(
        ImportChunk(account_id=tenant.account_id, import_id=import_id, start_row=4)
    )
    assert client.get(f"/v1/contact-imports/{import_id}", headers=tenant.headers).json() == job


def test_an_attempt_that_starts_an_import_a_dead_letter_ended_changes_nothing(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    redrive: Redrive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from talkturo.store import contact_imports as import_store

    # Given an import whose first chunk could never even read its job
    import_id = _import(client, tenant, 2)
    real_progress, real_start = import_store.progress, import_store.start_processing

    def unreadable(*args: Any) -> Any:
        raise TableAway("the table is away")

    monkeypatch.setattr(import_store, "progress", unreadable)
    redrive.exhaust("ContactImportQueue")
    monkeypatch.setattr(import_store, "progress", real_progress)

    # When one more attempt read it `pending` just as the dead letter ended it
    def start_after_the_dead_letter(*args: Any) -> bool:
        redrive.handle_dead_letters("ContactImportQueue")
        return real_start(*args)

    monkeypatch.setattr(import_store, "start_processing", start_after_the_dead_letter)
    contact_imports.process_chunk(
        ImportChunk(account_id=tenant.account_id, import_id=import_id, start_row=0)
    )

    # Then the import stays failed and imports nothing
    job = client.get(f"/v1/contact-imports/{import_id}", headers=tenant.headers).json()
    assert job["status"] == "failed"
    assert job["error"] == "chunk 1 of 1 failed after 5 attempts: TableAway"
    assert (job["processed_rows"], job["created"]) == (0, 0)
    assert _names(client, tenant) == []


# ---------------------------------------------------------------------------------- numbers
def test_a_number_whose_provisioning_keeps_failing_ends_in_error_and_holds_nothing(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    redrive: Redrive,
    carrier: FakeCarrier,
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a carrier that is busy on every attempt
    monkeypatch.setattr(carrier, "buy_number", _busy)
    bought = client.post(
        "/v1/phone-numbers", json={"phone_number": NUMBER}, headers=tenant.headers
    ).json()
    # When provisioning fails on every delivery and the dead letter is handled
    assert redrive.exhaust("ProvisioningQueue") == MAX_RECEIVES
    assert client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()[
        "status"
    ] == ("purchasing")
    assert redrive.handle_dead_letters("ProvisioningQueue") == 1

    # Then the number is in error, saying why, and holds neither the number nor the trial slot
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "error"
    assert got["error_message"] is not None and "buy it again" in got["error_message"]
    assert number_store.holder(NUMBER) is None
    again = client.post("/v1/phone-numbers", json={"phone_number": NUMBER}, headers=tenant.headers)
    assert again.status_code == 202 and again.json()["trial"] is True
    (letter,) = _listed(client, admin, queue="number_provisioning")
    assert (letter["job"], letter["action"]) == (bought["id"], "ended")
    assert letter["reason"] == got["error_message"]


# ---------------------------------------------------------------------------------- calls
def test_a_dial_job_that_never_places_ends_the_call_failed_once(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    redrive: Redrive,
    carrier: FakeCarrier,
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an outbound call whose carrier is busy on every attempt
    line = calls_setup.line(client, stack, tenant, NUMBER)

    monkeypatch.setattr(carrier, "place_call", _busy)
    made = client.post(
        "/v1/calls",
        json={"assistant_id": line.assistant_id, "to_number": CALLEE},
        headers=tenant.headers,
    ).json()
    # When the dialer fails on every delivery
    assert redrive.exhaust("DialQueue") == MAX_RECEIVES
    assert client.get(f"/v1/calls/{made['id']}", headers=tenant.headers).json()["status"] == (
        "queued"
    )
    # And its dead letter is delivered twice
    redrive.deliver_twice("DialQueue")

    # Then the call has ended failed with reason error, once
    call = client.get(f"/v1/calls/{made['id']}", headers=tenant.headers).json()
    assert (call["status"], call["outcome"], call["ended_reason"]) == ("ended", "failed", "error")
    assert call["error_message"] == dead_letters.DIAL_FAILED_MESSAGE
    assert carrier.placed == []
    # And it is recorded once, as ended (not "already ended" by the second delivery)
    (letter,) = _listed(client, admin)
    assert (letter["queue"], letter["job"], letter["action"]) == ("dial", made["id"], "ended")


def test_a_dead_letter_of_a_job_that_moved_on_leaves_it_alone(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    redrive: Redrive,
    carrier: FakeCarrier,
    admin: dict[str, str],
) -> None:
    # Given a number that was provisioned after all
    bought = client.post(
        "/v1/phone-numbers", json={"phone_number": NUMBER}, headers=tenant.headers
    ).json()
    body = json.dumps({"account_id": tenant.account_id, "number_id": bought["id"]})
    redrive.exhaust("ProvisioningQueue")
    # When a stale copy of its job arrives as a dead letter
    _dead(stack, "ProvisioningDeadLetterQueue", body)
    assert redrive.handle_dead_letters("ProvisioningQueue") == 1
    # Then the number stays active, and the record says so
    got = client.get(f"/v1/phone-numbers/{bought['id']}", headers=tenant.headers).json()
    assert got["status"] == "active"
    (letter,) = _listed(client, admin)
    assert letter["action"] == "already_ended"
    assert letter["reason"] == "the number was already active"


# ---------------------------------------------------------------------------------- campaigns
def test_a_campaign_job_dead_letter_is_recorded_with_its_campaign(
    client: TestClient, tenant: Tenant, stack: Stack, redrive: Redrive, admin: dict[str, str]
) -> None:
    # Given a campaign job that failed every delivery (SQS moved it to the dead-letter queue)
    job = {"type": "dispatch", "account_id": tenant.account_id, "campaign_id": "cmp_1"}
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.send_message(
        QueueUrl=stack.physical["CampaignDeadLetterQueue"], MessageBody=json.dumps(job)
    )
    # When the dead-letter worker takes it
    assert redrive.handle_dead_letters("CampaignQueue") == 1
    # Then it is recorded under its queue, with the campaign and what was lost
    (letter,) = _listed(client, admin, queue="campaign")
    assert (letter["job"], letter["account_id"]) == ("cmp_1", tenant.account_id)
    assert letter["action"] == "recorded"
    assert letter["reason"].startswith("the campaign's dispatch job did not run")


# ---------------------------------------------------------------------------------- post-call
def test_post_call_and_unreadable_dead_letters_are_logged_and_recorded(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    redrive: Redrive,
    admin: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a post-call job that cannot succeed (its call never ends) and a message that is no
    # job at all
    from talkturo.domain.calls import CallRecord
    from talkturo.domain.common import utcnow
    from talkturo.store import calls as call_store

    live = CallRecord(
        id="call_01JABCDEFGHJKMNPQRSTVWXYZ0",
        direction="inbound",
        status="ringing",
        assistant_id="asst_01J0000000000000000000000A",
        phone_number_id="pn_01J0000000000000000000000A",
        from_number="+14155550177",
        to_number="+14155550140",
        created_at=utcnow(),
    )
    call_store.create(tenant.account_id, live)
    sqs = boto3.client("sqs", region_name="us-east-1")
    job = {"account_id": tenant.account_id, "call_id": live.id}
    for body in (json.dumps(job), json.dumps({"token": "s3cr3t-value", "what": "?"})):
        sqs.send_message(QueueUrl=stack.physical["PostCallQueue"], MessageBody=body)
    # When they exhaust their receives and the dead-letter worker takes them
    redrive.exhaust("PostCallQueue")
    assert redrive.handle_dead_letters("PostCallQueue") == 2
    # Then both are recorded, the job with its call, the other without its secret
    letters = _listed(client, admin, queue="post_call")
    by_action = {letter["job"]: letter for letter in letters}
    assert by_action[job["call_id"]]["action"] == "ended"
    assert by_action[job["call_id"]]["account_id"] == tenant.account_id
    # And the call says its analysis failed
    brief = client.get(f"/v1/calls/{live.id}", headers=tenant.headers).json()["analysis"]
    assert brief["status"] == "failed" and "analysis was not done" in brief["error"]
    unreadable = by_action[None]
    assert unreadable["reason"].startswith("not a valid post_call job")
    assert "s3cr3t" not in unreadable["body_excerpt"]
    assert json.loads(unreadable["body_excerpt"]) == {"token": "***", "what": "?"}
    # And each was logged at ERROR with where it came from and when it was first sent
    logged = [r for r in caplog.records if r.getMessage() == "dead letter"]
    assert len(logged) == 2
    for record in logged:
        fields = record.__dict__
        assert record.levelname == "ERROR"
        assert fields["queue"] == "post_call"
        assert fields["message_id"] in {letter["id"] for letter in letters}
        assert fields["receive_count"] > MAX_RECEIVES
        assert fields["first_sent_at"] is not None
    assert {r.__dict__["body_excerpt"] for r in logged} == {
        letter["body_excerpt"] for letter in letters
    }
    assert not any("s3cr3t" in r.getMessage() + str(r.__dict__) for r in caplog.records)


# ---------------------------------------------------------------------------------- listing
def _dead(stack: Stack, dlq: str, body: str) -> None:
    """Put a message straight on a dead-letter queue."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    sqs.send_message(QueueUrl=stack.physical[dlq], MessageBody=body)


def _letter(stack: Stack, queue: str, message_id: str, body: str = "{}") -> None:
    dead_letters.handle(
        dead_letters.Letter(
            source_arn=stack.arns[queue],
            message_id=message_id,
            body=body,
            receive_count=6,
            sent_at=utcnow(),
        )
    )


def test_the_admin_listing_pages_newest_first_by_queue_and_needs_the_secret(
    client: TestClient, stack: Stack, admin: dict[str, str]
) -> None:
    # Given three post-call dead letters and one dial dead letter, in that order
    for n in range(3):
        _letter(stack, "PostCallDeadLetterQueue", f"post-{n}")
    _letter(stack, "DialDeadLetterQueue", "dial-0")
    _letter(stack, "DialDeadLetterQueue", "dial-0")  # delivered again: recorded once

    # Then they are listed newest first, in pages
    first = client.get("/v1/admin/dead-letters", params={"limit": 3}, headers=admin).json()
    assert [d["id"] for d in first["data"]] == ["dial-0", "post-2", "post-1"]
    assert first["has_more"] is True
    rest = client.get(
        "/v1/admin/dead-letters",
        params={"limit": 3, "starting_after": first["next_cursor"]},
        headers=admin,
    ).json()
    assert [d["id"] for d in rest["data"]] == ["post-0"]
    assert rest["has_more"] is False
    # And by queue
    assert [d["id"] for d in _listed(client, admin, queue="dial")] == ["dial-0"]
    # And a bad queue is a 422 naming it; without the secret there is no listing
    refused = client.get("/v1/admin/dead-letters", params={"queue": "nope"}, headers=admin)
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "queue"
    foreign = client.get(
        "/v1/admin/dead-letters", params={"starting_after": "bm90LWEtY3Vyc29y"}, headers=admin
    )
    assert foreign.status_code == 422
    assert foreign.json()["error"]["param"] == "starting_after"
    assert client.get("/v1/admin/dead-letters").status_code == 401


def test_the_cli_lists_dead_letters(stack: Stack, admin: dict[str, str]) -> None:
    from talkturo.api.app import create_app
    from talkturo.cli import main

    for n in range(3):
        _letter(stack, "PostCallDeadLetterQueue", f"post-{n}")
    _letter(stack, "DialDeadLetterQueue", "dial-0", body='{"account_id": "a", "call_id": "c"}')
    runner = CliRunner()
    with served(create_app()) as url:
        env = {"TALKTURO_API_URL": url, "TALKTURO_ADMIN_SECRET": ADMIN}
        # Pages are followed up to --limit
        listed = runner.invoke(main, ["dead-letters", "--limit", "2"], env=env)
        by_queue = runner.invoke(main, ["dead-letters", "--queue", "dial"], env=env)
        as_json = runner.invoke(main, ["dead-letters", "--json", "--limit", "500"], env=env)
        empty = runner.invoke(main, ["dead-letters", "--queue", "contact_import"], env=env)
        wrong = runner.invoke(
            main, ["dead-letters"], env={**env, "TALKTURO_ADMIN_SECRET": "not-the-secret"}
        )
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2
    assert "dial" in lines[0] and "the call no longer exists" in lines[0]
    assert "post_call" in lines[1]
    assert by_queue.exit_code == 0 and len(by_queue.output.splitlines()) == 1
    assert [d["id"] for d in json.loads(as_json.output)] == ["dial-0", "post-2", "post-1", "post-0"]
    assert empty.output.strip() == "No dead letters on contact_import."
    assert wrong.exit_code == 1 and "HTTP 401" in wrong.output
