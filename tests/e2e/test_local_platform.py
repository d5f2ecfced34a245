"""The local platform as a newcomer meets it: `talkturo dev`, then the API over real HTTP."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.conftest import LocalPlatform

pytestmark = pytest.mark.e2e


def test_the_dev_key_opens_the_dev_account(local_platform: LocalPlatform) -> None:
    with local_platform.client() as api:
        answer = api.get("/v1/account")

    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "Local developer"
    assert answer.json()["plan"] == "free"


def test_a_wrong_key_is_refused_in_the_error_envelope(local_platform: LocalPlatform) -> None:
    with local_platform.client("tk_not_a_key_of_anyone_0000000") as api:
        answer = api.get("/v1/account")

    assert answer.status_code == 401
    assert set(answer.json()["error"]) == {"type", "code", "message", "param"}


def test_the_interactive_docs_and_the_openapi_document_are_served(
    local_platform: LocalPlatform,
) -> None:
    with local_platform.client() as api:
        docs = api.get("/docs")
        document = api.get("/openapi.json")

    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert document.status_code == 200
    assert "/v1/account" in document.json()["paths"]


def test_the_ledger_shows_the_signup_grant(local_platform: LocalPlatform) -> None:
    with local_platform.client() as api:
        balance = api.get("/v1/credits")
        ledger = api.get("/v1/credits/ledger")

    assert balance.status_code == 200, balance.text
    assert ledger.status_code == 200, ledger.text
    entries = ledger.json()["data"]
    grants = [e for e in entries if e["kind"] == "grant" and e["description"] == "signup grant"]
    assert [Decimal(g["amount"]) for g in grants] == [Decimal(10)]
    assert Decimal(balance.json()["balance"]) == sum(Decimal(e["amount"]) for e in entries)


def test_an_admin_created_account_works_and_is_isolated(local_platform: LocalPlatform) -> None:
    created = local_platform.sign_up("Acme Dental")
    account_id = created["account"]["id"]
    secret = created["api_key"]["secret"]

    with local_platform.client(secret) as theirs, local_platform.client() as dev:
        own = theirs.get("/v1/account")
        balance = theirs.get("/v1/credits")
        their_keys = theirs.get("/v1/api-keys")
        dev_account = dev.get("/v1/account")
        dev_keys = dev.get("/v1/api-keys")
        # Revoking the other account's key from the dev account: it does not exist for us.
        foreign = dev.delete(f"/v1/api-keys/{created['api_key']['id']}")

    assert own.status_code == 200
    assert own.json()["id"] == account_id
    assert Decimal(balance.json()["balance"]) == Decimal(10)
    assert dev_account.json()["id"] != account_id
    assert [k["id"] for k in their_keys.json()["data"]] == [created["api_key"]["id"]]
    assert created["api_key"]["id"] not in {k["id"] for k in dev_keys.json()["data"]}
    assert foreign.status_code == 404


def test_the_admin_api_refuses_a_wrong_secret(local_platform: LocalPlatform) -> None:
    with local_platform.client("not-the-admin-secret") as api:
        answer = api.post("/v1/admin/accounts", json={"name": "Intruder"})

    assert answer.status_code == 401


def test_accounts_create_through_the_cli(local_platform: LocalPlatform) -> None:
    done = local_platform.cli("accounts", "create", "--name", "Globex", "--email", "it@example.com")

    assert done.returncode == 0, done.stderr
    secret = next(w for w in done.stdout.split() if w.startswith("tk_"))
    with local_platform.client(secret) as api:
        answer = api.get("/v1/account")
    assert answer.json()["name"] == "Globex"
    assert answer.json()["id"] in done.stdout


def test_the_cli_reports_api_errors_readably(local_platform: LocalPlatform) -> None:
    done = local_platform.cli(
        "accounts", "create", "--name", "Nobody", TALKTURO_ADMIN_SECRET="wrong"
    )

    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert "HTTP 401" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_malformed_dev_key_is_refused_before_anything_starts(
    local_platform: LocalPlatform,
) -> None:
    done = local_platform.cli(
        "dev", "--port", "0", "--aws-port", "0", TALKTURO_DEV_API_KEY="secret"
    )

    assert done.returncode == 1
    assert "TALKTURO_DEV_API_KEY must start with 'tk_'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_reported_clearly(local_platform: LocalPlatform) -> None:
    taken = local_platform.aws_endpoint.rsplit(":", 1)[1]
    done = local_platform.cli("dev", "--port", "0", "--aws-port", taken)

    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{taken}" in done.stderr
    assert "--aws-port" in done.stderr
    assert "Traceback" not in done.stderr


def test_contacts_import_through_the_cli_reports_counts_and_row_errors(
    local_platform: LocalPlatform, tmp_path: Path
) -> None:
    # A fresh account, so the counts are this import's alone.
    secret = local_platform.sign_up("Importer")["api_key"]["secret"]
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "first_name,last_name,email,phone,company\n"
        "Ada,Lovelace,ada@example.com,+14155550123,Acme Dental\n"
        "Grace,Hopper,grace@example.com,+14155550124,Acme Dental\n"
        "Bad,Row,not-an-email,,\n"
    )

    done = local_platform.cli("contacts", "import", str(leads), TALKTURO_API_KEY=secret)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Import completed: 3 of 3 rows: 2 created, 0 updated, 1 rejected." in done.stdout
    assert "row 4: email:" in done.stdout
    with local_platform.client(secret) as api:
        contacts = api.get("/v1/contacts").json()["data"]
    assert sorted(c["first_name"] for c in contacts) == ["Ada", "Grace"]
