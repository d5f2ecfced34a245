"""The local platform's data across restarts: `talkturo dev` stopped (Ctrl-C or kill -9) and
started again on the same data folder finds what it had; `--fresh` starts empty."""

from __future__ import annotations

import json
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import stripe

from tests.e2e.conftest import (
    LocalPlatform,
    Ports,
    eventually,
    kill_platform,
    running,
    talkturo_command,
)

pytestmark = pytest.mark.e2e

# The platform saves every 5 s when something changed; a save is on disk well within this.
SAVED_WITHIN_SECONDS = 20
NUMBER_ACTIVE_WITHIN_SECONDS = 30
CALL_ENDS_WITHIN_SECONDS = 60
STACK = "talkturo-local"
CSV = b"first_name,last_name,email\nAda,Lovelace,ada@example.com\nGrace,Hopper,grace@example.com\n"


def aws(platform: LocalPlatform, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=platform.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def banner_data(platform: LocalPlatform) -> str:
    found = re.search(r"Data\s+\S+\n\s+(?P<what>[^\n]+)", platform.log())
    assert found is not None, platform.log()
    return found["what"]


def buy_assigned_number(api: httpx.Client) -> dict[str, Any]:
    assistant = api.post("/v1/assistants", json={"template": "custom", "name": "Front desk"})
    assert assistant.status_code == 201, assistant.text
    offered = api.get(
        "/v1/phone-numbers/available", params={"country": "US", "area_code": "415", "limit": 1}
    ).json()["data"][0]
    bought = api.post("/v1/phone-numbers", json={"phone_number": offered["phone_number"]})
    assert bought.status_code == 202, bought.text
    number = eventually(
        lambda: api.get(f"/v1/phone-numbers/{bought.json()['id']}").json(),
        lambda n: n["status"] != "purchasing",
        NUMBER_ACTIVE_WITHIN_SECONDS,
        "the number leaves purchasing",
    )
    assert number["status"] == "active", number
    assigned = api.post(
        f"/v1/phone-numbers/{number['id']}/assign", json={"assistant_id": assistant.json()["id"]}
    )
    assert assigned.status_code == 200, assigned.text
    result: dict[str, Any] = assigned.json()
    return result


def dial_completes(platform: LocalPlatform, number: dict[str, Any], caller: str) -> None:
    """A simulated caller dials the number; the call completes and is recorded as answered."""
    done = platform.cli("call", "dial", "--to", number["phone_number"], "--from", caller)
    assert done.returncode == 0, done.stdout + done.stderr + platform.log()
    assert "Call completed" in done.stdout, done.stdout
    with platform.client() as api:
        calls = eventually(
            lambda: api.get(
                "/v1/calls", params={"direction": "inbound", "phone_number_id": number["id"]}
            ).json()["data"],
            lambda found: any(c["from_number"] == caller and c["status"] == "ended" for c in found),
            CALL_ENDS_WITHIN_SECONDS,
            "the inbound call is recorded and ended",
        )
    assert next(c for c in calls if c["from_number"] == caller)["outcome"] == "answered"


def carrier_sid(platform: LocalPlatform, account_id: str, number_id: str) -> str:
    """The carrier's SID of a number, as the table keeps it (the API does not show it)."""
    item = aws(platform, "dynamodb").get_item(
        TableName=f"{STACK}-MainTable",
        Key={"PK": {"S": f"A#{account_id}"}, "SK": {"S": f"PN#{number_id}"}},
    )["Item"]
    sid: str = json.loads(item["doc"]["S"])["carrier_sid"]
    assert sid.startswith("PN"), sid
    return sid


def carrier_number(platform: LocalPlatform, carrier_sid: str) -> httpx.Response:
    with platform.simulator() as simulator:
        return simulator.get(
            f"/2010-04-01/Accounts/{platform.simulator_account_sid}/IncomingPhoneNumbers/"
            f"{carrier_sid}.json"
        )


def saved_state(data_dir: Path) -> str:
    path = data_dir / "state.json"
    return path.read_text() if path.exists() else ""


def test_a_restart_finds_everything_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = Ports.free()
    # A generated key (no TALKTURO_DEV_API_KEY): it must be the same one after the restart.
    with running(tmp_path / "first.log", data_dir, ports=ports, dev_api_key=None) as first:
        assert "nothing saved yet" in banner_data(first)
        with first.client() as api:
            account = api.get("/v1/account").json()
            company = api.post("/v1/companies", json={"name": "Acme Dental"}).json()
            contact = api.post(
                "/v1/contacts",
                json={"first_name": "Ada", "phone": "+14155550123", "company_id": company["id"]},
            )
            assert contact.status_code == 201, contact.text
            imported = api.post(
                "/v1/contact-imports", content=CSV, headers={"Content-Type": "text/csv"}
            )
            assert imported.status_code in (201, 202), imported.text
            job = eventually(
                lambda: api.get(f"/v1/contact-imports/{imported.json()['id']}").json(),
                lambda j: j["status"] in ("completed", "failed"),
                30,
                "the import ends",
            )
            assert job["status"] == "completed", job
            number = buy_assigned_number(api)
        s3, sqs = aws(first, "s3"), aws(first, "sqs")
        bucket = f"{STACK}-filesbucket"
        s3.put_object(
            Bucket=bucket,
            Key="notes/raw.bin",
            Body=bytes(range(256)),
            ContentType="application/octet-stream",
            Metadata={"owner": "e2e"},
        )
        objects_before = {
            o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
        }
        # A message no worker sees yet (delayed: every queue of the template has a worker, so
        # a visible one would be taken; in-flight messages are covered by the persistence
        # tests of tests/integration).
        queue = sqs.get_queue_url(QueueName=f"{STACK}-PostCallQueue")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=600)
        before = first.simulator_account_sid, first.simulator_auth_token, first.api_key

    with running(tmp_path / "second.log", data_dir, ports=ports, dev_api_key=None) as second:
        assert banner_data(second).startswith("restored: "), second.log()
        assert (second.simulator_account_sid, second.simulator_auth_token, second.api_key) == before
        with second.client() as api:
            assert api.get("/v1/account").json()["id"] == account["id"]
            assert [c["name"] for c in api.get("/v1/companies").json()["data"]] == ["Acme Dental"]
            found = api.get(f"/v1/contacts/{contact.json()['id']}")
            assert found.status_code == 200, found.text
            assert found.json()["company_id"] == company["id"]
            names = {c["first_name"] for c in api.get("/v1/contacts").json()["data"]}
            assert names == {"Ada", "Grace"}
            assert api.get(f"/v1/contact-imports/{job['id']}").json()["status"] == "completed"
            restored_number = api.get(f"/v1/phone-numbers/{number['id']}").json()
        assert restored_number["status"] == "active"
        assert restored_number["assistant_id"] == number["assistant_id"]
        # The carrier still holds the number under the SID the table keeps.
        held = carrier_number(second, carrier_sid(second, account["id"], number["id"]))
        assert held.status_code == 200, held.text
        assert held.json()["phone_number"] == number["phone_number"]
        s3, sqs = aws(second, "s3"), aws(second, "sqs")
        objects_after = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
        assert objects_after == objects_before
        raw = s3.get_object(Bucket=bucket, Key="notes/raw.bin")
        assert raw["Body"].read() == bytes(range(256))
        assert raw["ContentType"] == "application/octet-stream"
        assert raw["Metadata"] == {"owner": "e2e"}
        queue = sqs.get_queue_url(QueueName=f"{STACK}-PostCallQueue")["QueueUrl"]
        counts = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
        # A call to the restored number reaches its assistant.
        dial_completes(second, restored_number, "+12025550181")


def test_a_kill_loses_at_most_the_last_interval(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running(tmp_path / "first.log", data_dir) as first:
        with first.client() as api:
            account_id = api.get("/v1/account").json()["id"]
            number = buy_assigned_number(api)
            bought = first.cli("billing", "buy", "pkg_10", "--pay")
            assert bought.returncode == 0, bought.stdout + bought.stderr
            company = api.post("/v1/companies", json={"name": "Saved before the kill"}).json()
        # Within an interval (and a bit) the company is on disk...
        eventually(
            lambda: saved_state(data_dir),
            lambda state: company["id"] in state,
            SAVED_WITHIN_SECONDS,
            "the company is saved",
        )
        kill_platform(first)
    assert json.loads(saved_state(data_dir))["version"] == 1

    # ...and a platform started on other ports (the old voice service is gone with the kill)
    # has it, with the number's webhooks following the API to its new address.
    with running(tmp_path / "second.log", data_dir) as second:
        assert second.base_url != first.base_url
        with second.client() as api:
            names = [c["name"] for c in api.get("/v1/companies").json()["data"]]
            assert names == ["Saved before the kill"]
            restored_number = api.get(f"/v1/phone-numbers/{number['id']}").json()
        held = carrier_number(second, carrier_sid(second, account_id, number["id"])).json()
        assert held["voice_url"].startswith(second.base_url + "/"), held
        dial_completes(second, restored_number, "+12025550182")
        # The Stripe simulator's payment was saved with the ledger's entries: they still match
        assert "1 payments" in reconciled(second)


def test_fresh_starts_empty(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running(tmp_path / "first.log", data_dir) as first:
        with first.client() as api:
            account_id = api.get("/v1/account").json()["id"]
            assert api.post("/v1/companies", json={"name": "Forgotten"}).status_code == 201
        # One folder, one platform: a second one on it stops at start and says why.
        second_one = first.cli("dev", *Ports.free().arguments(), TALKTURO_DATA_DIR=str(data_dir))
        assert second_one.returncode == 1
        assert "is in use by another `talkturo dev`" in second_one.stderr
        assert "Traceback" not in second_one.stderr

    with running(tmp_path / "second.log", data_dir, "--fresh") as second:
        assert banner_data(second) == "started empty (--fresh)"
        with second.client() as api:
            assert api.get("/v1/companies").json()["data"] == []
            assert api.get("/v1/account").json()["id"] != account_id


def stripe_key(data_dir: Path) -> str:
    """The Stripe simulator's secret key, as the data folder keeps it (the banner does not
    show it)."""
    parts = eventually(
        lambda: json.loads(saved_state(data_dir) or "{}").get("parts") or {},
        lambda found: "stripe" in found,
        SAVED_WITHIN_SECONDS,
        "the Stripe simulator's state is saved",
    )
    key: str = parts["stripe"]["secret_key"]
    return key


def reconciled(platform: LocalPlatform) -> str:
    """`talkturo billing reconcile`'s report; it must find no difference."""
    done = platform.cli("billing", "reconcile", "--since-days", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No differences" in done.stdout, done.stdout
    return done.stdout


def credited(platform: LocalPlatform, payments: int, balance: Decimal) -> None:
    """Wait for `payments` payments and their credits (the entries follow the payment)."""
    with platform.client() as api:
        eventually(
            lambda: (
                len(api.get("/v1/credits/payments").json()["data"]),
                Decimal(api.get("/v1/credits").json()["balance"]),
            ),
            lambda found: found == (payments, balance),
            SAVED_WITHIN_SECONDS,
            f"{payments} payments credited, a balance of {balance}",
        )


def test_the_stripe_simulator_keeps_its_payments_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = Ports.free()
    stripe_url = f"http://127.0.0.1:{ports.stripe}"
    with running(tmp_path / "first.log", data_dir, ports=ports) as first:
        with first.client() as api:
            account_id = api.get("/v1/account").json()["id"]
            start = Decimal(api.get("/v1/credits").json()["balance"])
        # A package bought on the local checkout page, the card saved for later
        bought = first.cli("billing", "buy", "pkg_10", "--save-card", "--pay")
        assert bought.returncode == 0, bought.stdout + bought.stderr + first.log()
        credited(first, 1, start + 20)
        # and one paid while the simulator holds its webhooks back: the platform stops before
        # it hears of it
        held = httpx.post(
            f"{stripe_url}/_sim/switches",
            data={"delay_seconds": "600"},
            headers={"Authorization": f"Bearer {stripe_key(data_dir)}"},
        )
        assert held.status_code == 200, held.text
        unheard = first.cli("billing", "buy", "pkg_50", "--pay", "--wait", "1")
        assert unheard.returncode == 1 and "no credits after 1 s" in unheard.stderr, unheard

    with running(tmp_path / "second.log", data_dir, ports=ports) as second:
        assert "2 Stripe payments" in banner_data(second), second.log()
        # The webhooks it had not delivered go out: the second payment is credited once
        credited(second, 2, start + 20 + 105)
        assert "2 payments" in reconciled(second)
        # The card saved before the restart pays off-session after it (as auto-reload does)
        sdk = stripe.StripeClient(stripe_key(data_dir), base_addresses={"api": stripe_url})
        (customer,) = sdk.v1.customers.list().data
        (card,) = sdk.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
        intent = sdk.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": card.id,
                "off_session": True,
                "confirm": True,
                "metadata": {
                    "talkturo_account": account_id,
                    "talkturo_package": "pkg_10",
                    "talkturo_credits": "20.0000",
                    "talkturo_bonus": "0.0000",
                },
            },
            options={"idempotency_key": "e2e-after-restart"},
        )
        assert intent.status == "succeeded"
        credited(second, 3, start + 20 + 105 + 20)
        assert "3 payments" in reconciled(second)

    # --fresh empties the simulator too: no payment of any account is left to reconcile
    with running(tmp_path / "third.log", data_dir, "--fresh", ports=ports) as third:
        report = reconciled(third)
        assert "0 payments, 0 refunds, 0 disputes (0 Stripe payments not ours)" in report


def test_an_unreadable_snapshot_stops_the_start_with_what_to_do(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "state.json").write_text('{"format": "talkturo-local-data", "version": 1, "tab')

    done = subprocess.run(
        [talkturo_command(), "dev", *Ports.free().arguments(), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "is not a readable snapshot" in done.stderr
    assert "--fresh" in done.stderr
    assert "Traceback" not in done.stderr
