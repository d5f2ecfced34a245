"""Contact CSV imports: upload, the worker driven from the queue, progress and the report."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from talkturo.local.template import PROJECT_ROOT, Stack
from tests.conftest import Tenant
from tests.integration import import_queue

CSV = {"Content-Type": "text/csv"}


def upload(client: TestClient, tenant: Tenant, text: str | bytes, **headers: str) -> Any:
    body = text.encode() if isinstance(text, str) else text
    return client.post(
        "/v1/contact-imports", content=body, headers={**tenant.headers, **CSV, **headers}
    )


def started(client: TestClient, tenant: Tenant, text: str | bytes) -> dict[str, Any]:
    answer = upload(client, tenant, text)
    assert answer.status_code == 202, answer.json()
    job: dict[str, Any] = answer.json()
    return job


def job_of(client: TestClient, tenant: Tenant, job: dict[str, Any]) -> dict[str, Any]:
    answer = client.get(f"/v1/contact-imports/{job['id']}", headers=tenant.headers)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def contacts_of(client: TestClient, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(
            "/v1/contacts",
            params={**params, "limit": 100, **({"starting_after": cursor} if cursor else {})},
            headers=tenant.headers,
        ).json()
        found.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return found


def report(client: TestClient, tenant: Tenant, job: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/contact-imports/{job['id']}/errors", headers=tenant.headers)
    assert answer.status_code == 200
    rows: list[dict[str, Any]] = answer.json()["data"]
    return rows


MIXED = (
    "\ufeffFirst Name,Last Name,E-mail,Phone,Company,Tags,Lead Status,DNC,tier,Favourite colour\n"
    "Ada,Lovelace,ada@example.com,(415) 555-0101,Acme,vip;lead,qualified,,gold,blue\n"
    "Bob,Builder,not-an-email,+14155550102,Acme,,,,,red\n"
    "Cy,Young,cy@example.com,12345,Globex,,,,,\n"
    "Dee,Dent,dee@example.com,+14155550104,acme ,cold,,yes,silver,\n"
    ",,,,,,,,,\n"
    "Eve,Evans,eve@example.com,+14155550105,New Co,,hot,,,\n"
    "Fay,Fox,fay@example.com,+14155550106,New Co,,,,platinum,\n"
    "Gus,Grey,,,New  CO,,,,,\n"
)


def test_an_import_creates_contacts_and_reports_bad_rows(
    client: TestClient, tenant: Tenant, stack: Stack
) -> None:
    # Given a contact custom field and an existing company "ACME"
    client.post(
        "/v1/custom-fields",
        json={
            "entity": "contact",
            "key": "tier",
            "label": "Tier",
            "type": "select",
            "options": ["Gold", "Silver"],
        },
        headers=tenant.headers,
    )
    acme = client.post("/v1/companies", json={"name": "ACME"}, headers=tenant.headers).json()

    # When a mixed file is uploaded
    job = started(client, tenant, MIXED)
    # Then the job is pending with what the header says, and its file and message are queued
    assert job["id"].startswith("imp_")
    assert job["status"] == "pending"
    assert job["total_rows"] == 7
    assert job["unknown_columns"] == ["Favourite colour"]
    assert {c["field"] for c in job["columns"]} >= {"first_name", "company", "custom.tier"}
    stored = boto3.client("s3").get_object(
        Bucket=stack.physical["FilesBucket"],
        Key=f"contact-imports/{tenant.account_id}/{job['id']}.csv",
    )
    assert stored["Body"].read() == MIXED.encode()

    # When the worker drains the queue
    handled = import_queue.drain(stack)
    # (one chunk, reading its rows from where the header ends)
    assert [(m["import_id"], m["start_row"], m["after_row"]) for m in handled] == [
        (job["id"], 0, 1)
    ]

    # Then the counters add up
    done = job_of(client, tenant, job)
    assert done["status"] == "completed"
    assert done["completed_at"] is not None
    assert (done["processed_rows"], done["created"], done["updated"], done["failed"]) == (
        7,
        3,
        0,
        4,
    )
    # And only a written row made its company: Globex (bad phone) and Fay's "New Co" (bad
    # tier) were never created; Gus's "New  CO" was, as he wrote it
    assert done["created_companies"] == 1

    # And the report names each bad row by its spreadsheet row, with its values and errors
    rows = report(client, tenant, job)
    assert [(r["row"], [e["field"] for e in r["errors"]]) for r in rows] == [
        (3, ["email"]),
        (4, ["phone"]),
        (7, ["lead_status"]),
        (8, ["custom.tier"]),
    ]
    assert rows[0]["values"]["E-mail"] == "not-an-email"
    assert rows[0]["values"]["First Name"] == "Bob"
    # And a message says what is wrong without repeating the field it names
    assert rows[1]["errors"][0]["message"].startswith("'12345' is not a valid phone number")
    assert rows[3]["errors"][0]["message"] == "must be one of: Gold, Silver"

    # And the good rows are contacts, linked to matched or created companies
    made = {c["first_name"]: c for c in contacts_of(client, tenant)}
    assert set(made) == {"Ada", "Dee", "Gus"}
    assert made["Ada"]["company_id"] == acme["id"]
    assert made["Ada"]["phone"] == "+14155550101"
    assert made["Ada"]["tags"] == ["vip", "lead"]
    assert made["Ada"]["custom"] == {"tier": "Gold"}
    assert made["Ada"]["lead_status"] == "qualified"
    assert made["Dee"]["company_id"] == acme["id"]
    assert (made["Dee"]["lead_status"], made["Dee"]["do_not_call"]) == ("dnc", True)
    companies = client.get("/v1/companies", headers=tenant.headers).json()["data"]
    assert sorted(c["name"] for c in companies) == ["ACME", "New  CO"]
    by_name = {c["name"]: c for c in companies}
    assert by_name["ACME"]["contact_count"] == 2
    assert by_name["New  CO"]["contact_count"] == 1
    assert made["Gus"]["company_name"] == "New  CO"


def test_a_row_whose_phone_is_known_updates_that_contact(
    client: TestClient, tenant: Tenant, stack: Stack
) -> None:
    # Given a contact with a phone, a job title and tags
    ada = client.post(
        "/v1/contacts",
        json={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": "+14155550101",
            "job_title": "CTO",
            "tags": ["old"],
            "lead_status": "qualified",
        },
        headers=tenant.headers,
    ).json()
    # When a file gives that number in another format, with some cells empty
    job = started(
        client,
        tenant,
        "phone,first_name,last_name,job_title,notes,do_not_call\n"
        "415-555-0101,Augusta,,,imported,true\n"
        "+14155550199,Bob,,,,\n",
    )
    import_queue.drain(stack)
    # Then the row updated the contact with its non-empty cells only
    done = job_of(client, tenant, job)
    assert (done["created"], done["updated"], done["failed"]) == (1, 1, 0)
    after = client.get(f"/v1/contacts/{ada['id']}", headers=tenant.headers).json()
    assert after["first_name"] == "Augusta"
    assert after["last_name"] == "Lovelace"
    assert after["job_title"] == "CTO"
    assert after["notes"] == "imported"
    assert (after["lead_status"], after["do_not_call"]) == ("dnc", True)
    assert len(contacts_of(client, tenant)) == 2


def test_a_row_never_lifts_do_not_call(client: TestClient, tenant: Tenant, stack: Stack) -> None:
    # Given two DNC contacts (Ada was qualified before) and a callable one
    def make(**fields: Any) -> dict[str, Any]:
        answer = client.post("/v1/contacts", json=fields, headers=tenant.headers)
        assert answer.status_code == 201, answer.json()
        made: dict[str, Any] = answer.json()
        return made

    ada = make(first_name="Ada", phone="+14155550101", lead_status="qualified", do_not_call=True)
    bob = make(first_name="Bob", phone="+14155550102", do_not_call=True)
    cy = make(first_name="Cy", phone="+14155550103", lead_status="contacted")
    # When a list from elsewhere says Ada is "new", Bob's DNC is "no", and Cy is DNC
    job = started(
        client,
        tenant,
        "phone,lead_status,dnc,job_title\n"
        "+14155550101,new,,CEO\n"
        "+14155550102,,no,CTO\n"
        "+14155550103,,yes,CFO\n",
    )
    import_queue.drain(stack)
    # Then every row updated its contact, and none was refused
    done = job_of(client, tenant, job)
    assert (done["created"], done["updated"], done["failed"]) == (0, 3, 0)

    def now(contact: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = client.get(
            f"/v1/contacts/{contact['id']}", headers=tenant.headers
        ).json()
        return found

    # And Ada and Bob are still DNC, their other cells applied; Cy became DNC
    for person, title in ((ada, "CEO"), (bob, "CTO"), (cy, "CFO")):
        after = now(person)
        assert (after["lead_status"], after["do_not_call"], after["job_title"]) == (
            "dnc",
            True,
            title,
        ), person["first_name"]
    # And lifting it through the API still brings back the status held before the import
    lifted = client.patch(
        f"/v1/contacts/{ada['id']}", json={"do_not_call": False}, headers=tenant.headers
    ).json()
    assert (lifted["lead_status"], lifted["do_not_call"]) == ("qualified", False)


def test_a_rejected_row_creates_no_company(
    client: TestClient, tenant: Tenant, stack: Stack
) -> None:
    # Given a contact select field
    client.post(
        "/v1/custom-fields",
        json={
            "entity": "contact",
            "key": "tier",
            "label": "Tier",
            "type": "select",
            "options": ["Gold"],
        },
        headers=tenant.headers,
    )
    # When rows naming new companies are refused for their other cells, and one is written
    long_name = "X" * 201
    job = started(
        client,
        tenant,
        "first_name,phone,secondary_phone,tier,company\n"
        "Ada,12345,,,Bad Phone Inc\n"
        "Bob,,nope,,Bad Second Inc\n"
        "Cy,,,platinum,Bad Tier Inc\n"
        ",,,,Nobody Inc\n"
        f"Dee,,,,{long_name}\n"
        "Eve,,,gold,Good Inc\n",
    )
    import_queue.drain(stack)
    # Then only the written row's company exists, and only it is counted
    done = job_of(client, tenant, job)
    assert (done["created"], done["failed"], done["created_companies"]) == (1, 5, 1)
    companies = client.get("/v1/companies", headers=tenant.headers).json()["data"]
    assert [(c["name"], c["contact_count"]) for c in companies] == [("Good Inc", 1)]
    # And each refused row says why, naming its field once
    errors = [(r["row"], r["errors"]) for r in report(client, tenant, job)]
    assert [(row, [e["field"] for e in found]) for row, found in errors] == [
        (2, ["phone"]),
        (3, ["secondary_phone"]),
        (4, ["custom.tier"]),
        (5, [None]),
        (6, ["company"]),
    ]
    for _, found in errors:
        for error in found:
            assert error["field"] is None or not error["message"].startswith(error["field"])
    assert errors[4][1][0]["message"] == "String should have at most 200 characters"


def test_a_redelivered_message_changes_nothing(
    client: TestClient, tenant: Tenant, stack: Stack
) -> None:
    # Given an import fully processed
    job = started(client, tenant, "first_name,email\nAda,ada@example.com\nBob,x\nCy,\n")
    (message,) = import_queue.drain(stack)
    before = job_of(client, tenant, job)
    people = contacts_of(client, tenant)
    # When its message is delivered again
    import_queue.invoke(stack, [json.dumps(message)])
    # Then the job, the contacts, the report and the queue are as they were
    assert job_of(client, tenant, job) == before
    assert contacts_of(client, tenant) == people
    assert len(report(client, tenant, job)) == 1
    assert import_queue.receive(stack) == []


def test_a_chunk_redone_after_a_crash_applies_no_row_twice(
    client: TestClient, tenant: Tenant, stack: Stack
) -> None:
    from talkturo.store.contact_imports import ContactImportItem, ImportChunkItem
    from talkturo.store.keys import account, account_scoped

    # Given an import of a row with a phone, a bad row, and a row without phone (nothing to
    # match it by)
    job = started(
        client, tenant, "first_name,email,phone\nAda,ada@example.com,+14155550101\nBob,x,\nCy,,\n"
    )
    item = ContactImportItem.get(account(tenant.account_id), f"IMP#{job['id']}")
    (message,) = import_queue.drain(stack)
    first = job_of(client, tenant, job)
    # When the chunk's rows landed but its counters did not (a crash in between)
    item.save()
    ImportChunkItem(account_scoped(tenant.account_id, "IMP", job["id"]), "PART#0000000").delete()
    assert job_of(client, tenant, job)["status"] == "pending"
    import_queue.invoke(stack, [json.dumps(message)])
    # Then doing the chunk again counts every row once and creates nobody twice
    again = job_of(client, tenant, job)
    assert (again["created"], again["failed"], again["processed_rows"]) == (2, 1, 3)
    assert {k: v for k, v in again.items() if not k.endswith("_at")} == {
        k: v for k, v in first.items() if not k.endswith("_at")
    }
    assert sorted(c["first_name"] for c in contacts_of(client, tenant)) == ["Ada", "Cy"]


def test_a_large_file_goes_through_in_chunks_with_progress(
    client: TestClient, tenant: Tenant, stack: Stack
) -> None:
    # Given 450 rows over three companies, every tenth one bad (rows are kept small: the
    # emulator copies the whole table on every transaction, so big rows make this test slow)
    lines = ["first_name,email,company"]
    for i in range(450):
        email = "nope" if i % 10 == 9 else ""
        lines.append(f"P{i},{email},Company {i % 3}")
    job = started(client, tenant, "\n".join(lines) + "\n")
    assert job["total_rows"] == 450

    # When the worker takes the chunks (all queued at the upload) in any order, one at a time
    messages = import_queue.receive(stack)
    assert sorted(json.loads(body)["start_row"] for body, _ in messages) == [0, 200, 400]
    progress = []
    for body, _ in sorted(messages, key=lambda m: -json.loads(m[0])["start_row"]):
        import_queue.invoke(stack, [body])
        state = job_of(client, tenant, job)
        progress.append(
            (
                json.loads(body)["start_row"],
                state["status"],
                state["processed_rows"],
                state["failed"],
            )
        )
    # Then progress shows as each lands, and the last one completes the job
    assert progress == [
        (400, "processing", 50, 5),
        (200, "processing", 250, 25),
        (0, "completed", 450, 45),
    ]
    done = job_of(client, tenant, job)
    assert (done["created"], done["updated"], done["created_companies"]) == (405, 0, 3)
    # And the report pages in row order, rows numbered as in a spreadsheet
    first = client.get(
        f"/v1/contact-imports/{job['id']}/errors", params={"limit": 30}, headers=tenant.headers
    ).json()
    rest = client.get(
        f"/v1/contact-imports/{job['id']}/errors",
        params={"limit": 30, "starting_after": first["next_cursor"]},
        headers=tenant.headers,
    ).json()
    assert first["has_more"] is True
    assert rest["has_more"] is False
    rows = [r["row"] for r in first["data"] + rest["data"]]
    assert rows == [i + 2 for i in range(450) if i % 10 == 9]
    assert first["data"][0]["values"] == {
        "first_name": "P9",
        "email": "nope",
        "company": "Company 0",
    }
    assert first["data"][0]["errors"][0]["field"] == "email"
    counts = {
        c["name"]: c["contact_count"]
        for c in client.get("/v1/companies", headers=tenant.headers).json()["data"]
    }
    assert counts == {"Company 0": 135, "Company 1": 135, "Company 2": 135}


@pytest.mark.parametrize(
    ("body", "headers", "status", "param"),
    [
        (b"", CSV, 422, "file"),
        (b"colour,size\nred,9\n", CSV, 422, "file"),
        (b"first_name,phone\n", CSV, 422, "file"),
        ("first_name\nJos\xe9\n".encode("latin-1"), CSV, 422, "file"),
        (b"first_name\nAda\n", {"Content-Type": "application/json"}, 415, "Content-Type"),
        (b"first_name\n" + b"Ada\n" * (5 * 1024 * 1024 // 4 + 1), CSV, 413, "file"),
    ],
)
def test_unusable_uploads_are_refused(
    client: TestClient,
    tenant: Tenant,
    stack: Stack,
    body: bytes,
    headers: dict[str, str],
    status: int,
    param: str,
) -> None:
    answer = client.post("/v1/contact-imports", content=body, headers={**tenant.headers, **headers})
    assert answer.status_code == status, answer.json()
    assert answer.json()["error"]["param"] == param
    # And nothing was started
    assert client.get("/v1/contact-imports", headers=tenant.headers).json()["data"] == []
    assert import_queue.receive(stack) == []


def test_a_quote_never_closed_is_a_row_error_after_the_rows_before_it(
    client: TestClient, tenant: Tenant, stack: Stack
) -> None:
    # Given a file whose third row opens a quote that is never closed
    job = started(
        client,
        tenant,
        'first_name,phone\nAda,+14155550101\n"Bob,+14155550102\nCy,+14155550103\n',
    )
    # When the worker runs
    import_queue.drain(stack)
    # Then Ada is imported, the broken row is in the report, and no contact holds the rest
    done = job_of(client, tenant, job)
    assert (done["status"], done["created"], done["failed"]) == ("completed", 1, 1)
    assert [c["first_name"] for c in contacts_of(client, tenant)] == ["Ada"]
    [row] = report(client, tenant, job)
    assert row["row"] == 3
    assert row["errors"][0]["field"] is None
    assert "never closed" in row["errors"][0]["message"]


def test_a_file_over_the_limit_is_told_its_real_size_and_the_limit(
    client: TestClient, tenant: Tenant
) -> None:
    limit = 5 * 1024 * 1024
    body = b"first_name\n" + b"Ada\n" * (2 * limit // 4)
    answer = upload(client, tenant, body)
    assert answer.status_code == 413
    message = answer.json()["error"]["message"]
    assert f"is {len(body)} bytes" in message
    assert f"at most {limit} bytes" in message


def test_imports_are_listed_newest_first(client: TestClient, tenant: Tenant) -> None:
    made = [started(client, tenant, f"first_name\nP{i}\n")["id"] for i in range(3)]
    page = client.get("/v1/contact-imports", params={"limit": 2}, headers=tenant.headers).json()
    assert [j["id"] for j in page["data"]] == [made[2], made[1]]
    rest = client.get(
        "/v1/contact-imports",
        params={"limit": 2, "starting_after": page["next_cursor"]},
        headers=tenant.headers,
    ).json()
    assert [j["id"] for j in rest["data"]] == [made[0]]


def test_another_accounts_imports_are_invisible(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, stack: Stack
) -> None:
    job = started(client, tenant, "first_name,email\nAda,bad\n")
    import_queue.drain(stack)
    other = other_tenant.headers
    assert client.get(f"/v1/contact-imports/{job['id']}", headers=other).status_code == 404
    assert client.get(f"/v1/contact-imports/{job['id']}/errors", headers=other).status_code == 404
    assert client.get("/v1/contact-imports", headers=other).json()["data"] == []
    assert len(report(client, tenant, job)) == 1


def test_every_route_needs_a_key(client: TestClient, tenant: Tenant) -> None:
    for method, path in (
        ("POST", "/v1/contact-imports"),
        ("GET", "/v1/contact-imports"),
        ("GET", "/v1/contact-imports/imp_x"),
        ("GET", "/v1/contact-imports/imp_x/errors"),
    ):
        assert client.request(method, path).status_code == 401


def test_upload_is_idempotent_with_a_key(client: TestClient, tenant: Tenant, stack: Stack) -> None:
    # When the same file is sent twice with one key / Then one import, one queued message
    first = upload(client, tenant, "first_name\nAda\n", **{"Idempotency-Key": "imp-1"})
    second = upload(client, tenant, "first_name\nAda\n", **{"Idempotency-Key": "imp-1"})
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert len(client.get("/v1/contact-imports", headers=tenant.headers).json()["data"]) == 1
    assert len(import_queue.receive(stack)) == 1
    # When the key is reused for another file / Then 422 idempotency_key_reused
    reused = upload(client, tenant, "first_name\nBob\n", **{"Idempotency-Key": "imp-1"})
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_a_message_for_an_unknown_import_is_dropped(stack: Stack) -> None:
    # Given the sample chunk message (events/contact_import_chunk.json) of an import that does
    # not exist / When handled / Then it is consumed without failing (nothing to retry)
    event = json.loads((PROJECT_ROOT / "events" / "contact_import_chunk.json").read_text())
    answer = import_queue.handler()(event, import_queue.LambdaContext())
    assert answer == {"batchItemFailures": []}


def test_a_malformed_message_is_reported_as_failed(stack: Stack) -> None:
    # Given a batch of a message that is not a chunk and one that is
    good = json.dumps({"account_id": "acct_x", "import_id": "imp_x", "start_row": 0})
    event = import_queue.sqs_event(stack, ['{"import_id": 1}', good])
    # When handled / Then only the malformed one is reported failed (to be retried, then DLQ)
    answer = import_queue.handler()(event, import_queue.LambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}


def test_new_contacts_are_written_several_to_a_transaction(
    client: TestClient, tenant: Tenant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.store.transact import Writes

    commits: list[int] = []
    commit = Writes.commit

    def counted(writes: Writes) -> None:
        commits.append(len(writes))
        commit(writes)

    monkeypatch.setattr(Writes, "commit", counted)
    # Given 60 new people at one company, and a row whose phone an earlier row gives its contact
    lines = ["first_name,phone,company,tags"]
    lines += [f"P{i},+1415555{1000 + i},Acme,vip" for i in range(60)]
    lines.append("Again,+14155551003,Acme,")
    job = started(client, tenant, "\n".join(lines) + "\n")
    # When it is imported
    import_queue.drain(stack)
    # Then far fewer transactions than rows wrote them, none over DynamoDB's 100 writes
    assert len(commits) <= 15 and max(commits) <= 100
    done = job_of(client, tenant, job)
    assert (done["created"], done["updated"], done["failed"]) == (60, 1, 0)
    people = contacts_of(client, tenant)
    assert len(people) == 60
    assert {c["first_name"] for c in people if c["phone"] == "+14155551003"} == {"Again"}
    assert len(contacts_of(client, tenant, tag="vip")) == 60
    (acme,) = client.get("/v1/companies", headers=tenant.headers).json()["data"]
    assert acme["contact_count"] == 60


def test_a_company_created_after_the_chunk_read_its_names_is_joined_not_doubled(
    client: TestClient, tenant: Tenant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.store import companies as company_store

    find = company_store.find_by_names
    made: list[str] = []

    def created_meanwhile(account_id: str, names: Any) -> dict[str, str]:
        found = find(account_id, names)
        if not made:
            # Someone else creates Acme once the chunk has read that no company has its name
            answer = client.post("/v1/companies", json={"name": "Acme"}, headers=tenant.headers)
            assert answer.status_code == 201, answer.json()
            made.append(answer.json()["id"])
        return found

    monkeypatch.setattr(company_store, "find_by_names", created_meanwhile)
    # Given two rows at Acme, unknown when the chunk reads its companies
    job = started(client, tenant, "first_name,company\nAda,Acme\nBob,acme\n")
    # When it is imported
    import_queue.drain(stack)
    # Then both joined the Acme created meanwhile (the import's own creation was refused)
    done = job_of(client, tenant, job)
    assert (done["created"], done["failed"], done["created_companies"]) == (2, 0, 0)
    (acme,) = client.get("/v1/companies", headers=tenant.headers).json()["data"]
    assert acme["id"] == made[0] and acme["contact_count"] == 2
    assert {c["company_id"] for c in contacts_of(client, tenant)} == {made[0]}


def test_a_refused_batch_is_done_row_by_row(
    client: TestClient, tenant: Tenant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.store import contacts as contact_store

    together = contact_store.write_together
    refused: list[int] = []

    def phone_taken_meanwhile(account_id: str, entries: Any) -> int:
        if not refused:
            # Someone else takes the third row's number after the chunk read it
            taken = client.post(
                "/v1/contacts",
                json={"first_name": "Other", "phone": "+14155552002"},
                headers=tenant.headers,
            )
            assert taken.status_code == 201, taken.json()
        try:
            return together(account_id, entries)
        except contact_store.NotTogether as error:
            refused.append(error.count)
            raise

    monkeypatch.setattr(contact_store, "write_together", phone_taken_meanwhile)
    # Given five new people at one company, the third of whom will find their number taken
    lines = ["first_name,phone,company"] + [f"P{i},+1415555{2000 + i},Acme" for i in range(5)]
    job = started(client, tenant, "\n".join(lines) + "\n")
    # When it is imported
    import_queue.drain(stack)
    # Then the batch was refused, and its rows done one by one: the third is reported, the
    # others created once each, the company counting them
    assert refused == [5]
    done = job_of(client, tenant, job)
    assert (done["created"], done["failed"], done["processed_rows"]) == (4, 1, 5)
    (error,) = report(client, tenant, job)
    assert error["row"] == 4 and error["errors"][0]["field"] == "phone"
    names = sorted(c["first_name"] for c in contacts_of(client, tenant))
    assert names == ["Other", "P0", "P1", "P3", "P4"]
    (acme,) = client.get("/v1/companies", headers=tenant.headers).json()["data"]
    assert acme["contact_count"] == 4
    # And nothing is left waiting on the queue
    assert import_queue.receive(stack) == []


def test_rows_updating_contacts_are_written_several_to_a_transaction(
    client: TestClient, tenant: Tenant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.store.transact import Writes

    # Given 40 contacts at Acme, imported
    first = ["first_name,phone,company"] + [f"P{i},+1415555{3000 + i},Acme" for i in range(40)]
    started(client, tenant, "\n".join(first) + "\n")
    import_queue.drain(stack)
    commits: list[int] = []
    commit = Writes.commit

    def counted(writes: Writes) -> None:
        commits.append(len(writes))
        commit(writes)

    monkeypatch.setattr(Writes, "commit", counted)
    # When a second file renames them all, moves half of them to Globex, and tags them
    again = ["first_name,phone,company,tags"] + [
        f"Q{i},+1415555{3000 + i},{'Globex' if i % 2 else 'Acme'},again" for i in range(40)
    ]
    job = started(client, tenant, "\n".join(again) + "\n")
    import_queue.drain(stack)
    # Then far fewer transactions than rows wrote the changes, and each landed as row by row
    assert len([size for size in commits if size > 3]) <= 6 and max(commits) <= 100
    done = job_of(client, tenant, job)
    assert (done["created"], done["updated"], done["failed"]) == (0, 40, 0)
    people = contacts_of(client, tenant)
    assert sorted(c["first_name"] for c in people) == sorted(f"Q{i}" for i in range(40))
    assert len(contacts_of(client, tenant, tag="again")) == 40
    companies = client.get("/v1/companies", headers=tenant.headers).json()["data"]
    assert {c["name"]: c["contact_count"] for c in companies} == {"Acme": 20, "Globex": 20}


def test_a_contact_changed_since_it_was_read_is_updated_row_by_row(
    client: TestClient, tenant: Tenant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.store import contacts as contact_store

    lines = ["first_name,phone"] + [f"P{i},+1415555{4000 + i}" for i in range(3)]
    started(client, tenant, "\n".join(lines) + "\n")
    import_queue.drain(stack)
    (second,) = [c for c in contacts_of(client, tenant) if c["first_name"] == "P1"]
    together = contact_store.write_together
    refused: list[int] = []

    def changed_meanwhile(account_id: str, entries: Any) -> int:
        if not refused:
            # Someone edits the second contact after the chunk read it
            edited = client.patch(
                f"/v1/contacts/{second['id']}", json={"job_title": "CTO"}, headers=tenant.headers
            )
            assert edited.status_code == 200, edited.json()
        try:
            return together(account_id, entries)
        except contact_store.NotTogether as error:
            refused.append(error.count)
            raise

    monkeypatch.setattr(contact_store, "write_together", changed_meanwhile)
    # When a file renames all three
    renamed = ["first_name,phone"] + [f"R{i},+1415555{4000 + i}" for i in range(3)]
    job = started(client, tenant, "\n".join(renamed) + "\n")
    import_queue.drain(stack)
    # Then the batch was refused, and its rows done one by one from what is stored now: the
    # edit made meanwhile is kept, and every row lands once
    assert refused == [3]
    done = job_of(client, tenant, job)
    assert (done["updated"], done["failed"], done["processed_rows"]) == (3, 0, 3)
    now = client.get(f"/v1/contacts/{second['id']}", headers=tenant.headers).json()
    assert (now["first_name"], now["job_title"]) == ("R1", "CTO")
    assert sorted(c["first_name"] for c in contacts_of(client, tenant)) == ["R0", "R1", "R2"]


def test_rows_sharing_a_phone_across_chunks_apply_in_file_order_whatever_runs_first(
    client: TestClient, tenant: Tenant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talkturo.services import contact_imports

    # Given chunks of 2 rows, and one number in chunks 1 and 3 (written two ways), the later
    # row saying only a new first name
    monkeypatch.setattr(contact_imports, "CHUNK_ROWS", 2)
    job = started(
        client,
        tenant,
        "first_name,email,phone\n"
        "Old,old@example.com,+1 415 555 0101\n"
        "Ann,,+14155550102\n"
        "Bo,,\n"
        "Cy,,+14155550103\n"
        "New,,(415) 555-0101\n"
        "Di,,\n",
    )
    messages = import_queue.receive(stack)
    chunks = {json.loads(body)["start_row"]: body for body, _ in messages}
    assert sorted(chunks) == [0, 2, 4]
    # When the chunks run last first: they leave the shared number's rows to the tail
    for start in (4, 2, 0):
        import_queue.invoke(stack, [chunks[start]])
    assert job_of(client, tenant, job)["processed_rows"] == 4
    # And the tail, queued once every chunk landed, does them in file order
    (tail,) = import_queue.receive(stack)
    assert json.loads(tail[0])["tail"] == 0
    import_queue.invoke(stack, [tail[0]])

    # Then the later row won, over the earlier one's values
    done = job_of(client, tenant, job)
    assert done["status"] == "completed"
    assert (done["processed_rows"], done["created"], done["updated"]) == (6, 5, 1)
    (shared,) = [c for c in contacts_of(client, tenant) if c["phone"] == "+14155550101"]
    assert (shared["first_name"], shared["email"]) == ("New", "old@example.com")
    # And a tail delivered again changes nothing
    import_queue.invoke(stack, [tail[0]])
    assert job_of(client, tenant, job) == done
    assert import_queue.receive(stack) == []
