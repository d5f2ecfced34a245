"""The README's tour, run as written against the local platform: the README stays true."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.e2e.conftest import LocalPlatform

ROOT = Path(__file__).resolve().parents[2]


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A tour of the API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 4, "the tour lost its examples"
    return "\n".join(blocks)


def test_the_readme_tour_works_as_written(local_platform: LocalPlatform) -> None:
    # Given a newcomer's fresh account and the tour's commands, verbatim
    signed_up = local_platform.sign_up("README tour")
    key = signed_up["api_key"]["secret"]
    environment = {**local_platform.cli_environment(), "TALKTURO_API_KEY": key}

    # When they run the tour in a shell, from the project folder
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tour_script()],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )

    # Then every command succeeded and the account holds what the tour made
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"error":{' not in run.stdout, run.stdout
    api = local_platform.client(key)
    contacts = api.get("/v1/contacts", params={"limit": 100}).json()["data"]
    assert len(contacts) == 5  # Nancy, and 4 of the CSV's 5 rows (one has no valid phone)
    assert {
        c["first_name"] for c in api.get("/v1/contacts", params={"tag": "vip"}).json()["data"]
    } == {"Ada", "Katherine"}
    companies = {c["name"] for c in api.get("/v1/companies").json()["data"]}
    assert {
        "Northwind Traders",
        "Analytical Engines",
        "Cobol Systems",
        "Bletchley Labs",
    } <= companies
    assistants = api.get("/v1/assistants").json()["data"]
    assert [a["name"] for a in assistants] == ["Northwind setter"]
    numbers = api.get("/v1/phone-numbers").json()["data"]
    assert [(n["status"], n["assistant_id"], n["trial"]) for n in numbers] == [
        ("active", assistants[0]["id"], True)
    ]
    assert assistants[0]["phone_number_ids"] == [numbers[0]["id"]]
    # The calls: Ada answered, Grace was busy, Nancy's second call in was answered (her first
    # met inbound switched off: she heard "not available", and no call was recorded), and the
    # scripted caller's conversation ended by the assistant's end_call tool.
    assert "This number is not available right now. Goodbye." in run.stdout
    by_name = {c["first_name"]: c["id"] for c in contacts}
    every_call = api.get("/v1/calls", params={"limit": 100}).json()["data"]
    calls = [c for c in every_call if c["campaign_id"] is None]
    assert [
        (c["direction"], c["status"], c["outcome"], c["contact_id"], c["assistant_id"])
        for c in calls
    ] == [
        ("inbound", "ended", "answered", None, assistants[0]["id"]),
        ("inbound", "ended", "answered", by_name["Nancy"], assistants[0]["id"]),
        ("outbound", "ended", "busy", by_name["Grace"], assistants[0]["id"]),
        ("outbound", "ended", "answered", by_name["Ada"], assistants[0]["id"]),
    ]
    assert {c["phone_number_id"] for c in calls} == {numbers[0]["id"]}
    assert assistants[0]["telephony"]["inbound_enabled"] is True
    conversation = calls[0]
    assert conversation["ended_reason"] == "assistant_ended" and "assistant_ended" in run.stdout
    recording = Path(ROOT, "call.wav")
    assert conversation["recording_available"] and recording.stat().st_size > 1000
    recording.unlink()
    transcript = api.get(f"/v1/calls/{conversation['id']}/transcript").json()["messages"]
    assert any(m["interrupted"] for m in transcript), transcript
    # The answered calls drew credits while they ran: the ledger holds their usage.
    ledger = api.get("/v1/credits/ledger", params={"limit": 100}).json()["data"]
    assert ledger[-1]["kind"] == "grant"
    usage = -sum(Decimal(e["amount"]) for e in ledger if e["kind"] == "usage")
    assert usage > 0
    assert usage == sum(Decimal(c["credits_charged"]) for c in every_call)
    _check_campaign(api, by_name, every_call)


def _check_campaign(api: Any, by_name: dict[str, str], every_call: list[dict[str, Any]]) -> None:
    """The campaign section: what a contact went through depends on whether it is calling
    hours where they are (the floor cannot be switched off), so each is checked against its
    own clock: done as its phone behaves, or waiting for its morning, never called outside."""
    (campaign,) = api.get("/v1/campaigns").json()["data"]
    assert campaign["name"] == "Launch follow-up" and campaign["audience_total"] == 4
    assert campaign["skipped"]["invalid_number"] == 1
    members = {
        m["contact_id"]: m
        for m in api.get(f"/v1/campaigns/{campaign['id']}/contacts").json()["data"]
    }
    alan = members[by_name["Alan"]]
    assert alan["state"] == "skipped" and alan["skip_reason"] == "invalid_number"
    now = datetime.now(UTC)
    expected = {
        "Ada": ("completed", "answered"),
        "Grace": ("exhausted", "busy"),
        "Katherine": ("exhausted", "voicemail"),
    }
    for name, (state, outcome) in expected.items():
        member = members[by_name[name]]
        for attempt in member["history"]:
            local = datetime.fromisoformat(attempt["local_time"])
            assert 8 <= local.hour < 21, (name, attempt)  # never outside the floor
        if member["state"] == "pending":
            assert datetime.fromisoformat(member["next_attempt_at"]) > now, member
            continue
        assert (member["state"], member["last_outcome"]) == (state, outcome), member
    campaign_calls = [c for c in every_call if c["campaign_id"] == campaign["id"]]
    assert len(campaign_calls) == sum(m["attempts"] for m in members.values())
    done = all(m["state"] != "pending" for m in members.values())
    assert (campaign["status"] == "completed") == done, campaign
