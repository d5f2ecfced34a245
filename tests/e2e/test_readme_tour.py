"""The README's tour, run as written against the local platform: the README stays true."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
    began = datetime.now(UTC)

    # When they run the tour in a shell, from the project folder
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tour_script()],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    # Then every command succeeded and the account holds what the tour made
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"error":{' not in run.stdout, run.stdout
    api = local_platform.client(key)
    contacts = api.get("/v1/contacts", params={"limit": 100}).json()["data"]
    assert len(contacts) == 13  # Nancy, and 12 of the CSV's 13 rows (one has no valid phone)
    assert {
        c["first_name"] for c in api.get("/v1/contacts", params={"tag": "vip"}).json()["data"]
    } == {"Ada", "Katherine"}
    companies = {c["name"] for c in api.get("/v1/companies").json()["data"]}
    assert {
        "Northwind Traders",
        "Analytical Engines",
        "Cobol Systems",
        "Bletchley Labs",
        "Aloha Tours",
        "Karoo Safaris",
    } <= companies
    assistants = api.get("/v1/assistants").json()["data"]
    assert [a["name"] for a in assistants] == ["Northwind setter"]
    numbers = api.get("/v1/phone-numbers").json()["data"]
    # Bought as a trial number; buying credits (the tour's last step) made it permanent
    assert [(n["status"], n["assistant_id"], n["trial"]) for n in numbers] == [
        ("active", assistants[0]["id"], False)
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
    # The package bought once, although every Stripe event was sent three times
    (payment,) = api.get("/v1/credits/payments").json()["data"]
    assert (payment["amount_cents"], payment["credits"]) == (5000, "105.0000")
    bought = sorted((e["kind"], e["amount"]) for e in ledger if e["reference"] == payment["id"])
    assert bought == [("bonus", "5.0000"), ("purchase", "100.0000")]
    assert api.get("/v1/account").json()["plan"] == "paid"
    usage = -sum(Decimal(e["amount"]) for e in ledger if e["kind"] == "usage")
    assert usage > 0
    assert usage == sum(Decimal(c["credits_charged"]) for c in every_call)
    _check_campaign(api, by_name, every_call, began)


# The launch list (examples/contacts.csv): one person of each kind in each office, 12 h apart.
OFFICES = {"Pacific/Honolulu": 0, "Africa/Johannesburg": 1}
LAUNCH = {
    ("Leilani", "Thandi"): ("completed", ["answered"]),
    ("Makoa", "Sipho"): ("exhausted", ["no_answer", "no_answer"]),
    ("Kai", "Naledi"): ("exhausted", ["busy", "busy"]),
    ("Noelani", "Zanele"): ("exhausted", ["voicemail"]),
}


def _open(zone: str, moment: datetime) -> bool:
    """Inside the federal floor, 08:00-21:00 in `zone`."""
    return 8 <= moment.astimezone(ZoneInfo(zone)).hour < 21


def _check_campaign(
    api: Any, by_name: dict[str, str], every_call: list[dict[str, Any]], began: datetime
) -> None:
    """The campaign section. Whatever the time, one office is inside calling hours (the floor
    cannot be switched off): each pair has one person done as their phone behaves; an office
    inside hours for the whole tour is done; one outside for the whole tour was never called
    and waits for its 08:00. Nobody is ever called outside 08:00-21:00 their time."""
    (campaign,) = api.get("/v1/campaigns").json()["data"]
    assert campaign["name"] == "Launch follow-up" and campaign["audience_total"] == 9
    assert campaign["skipped"]["invalid_number"] == 1
    members = {
        m["contact_id"]: m
        for m in api.get(f"/v1/campaigns/{campaign['id']}/contacts").json()["data"]
    }
    alan = members[by_name["Alan"]]
    assert alan["state"] == "skipped" and alan["skip_reason"] == "invalid_number"
    now = datetime.now(UTC)
    for pair, (state, outcomes) in LAUNCH.items():
        done = 0
        for name, zone in zip(pair, OFFICES, strict=True):
            member = members[by_name[name]]
            seen = [a["outcome"] for a in member["history"]]
            for attempt in member["history"]:
                assert attempt["timezone"] == zone, (name, attempt)
                local = datetime.fromisoformat(attempt["local_time"])
                assert 8 <= local.hour < 21, (name, attempt)  # never outside the floor
                assert "federal 08:00-21:00" in attempt["rule"], (name, attempt)
            if (member["state"], seen) == (state, outcomes):
                done += 1
                assert _open(zone, now) or _open(zone, began), (name, member)
                continue
            # Not done: waiting for the next morning where they are, after what it had.
            assert member["state"] == "pending", (name, member)
            assert seen == outcomes[: len(seen)], (name, member)
            waits = datetime.fromisoformat(member["next_attempt_at"])
            assert waits > now and waits.astimezone(ZoneInfo(zone)).hour == 8, (name, member)
            assert not _open(zone, now), (name, member)
            if not _open(zone, began):  # outside hours for the whole tour: never called
                assert seen == [], (name, member)
        assert done >= 1, pair  # one office or the other is always inside calling hours
    outcomes = campaign["outcomes"]
    assert outcomes["answered"] >= 1 and outcomes["voicemail"] >= 1
    assert outcomes["no_answer"] >= 2 and outcomes["busy"] >= 2  # called, then called again
    campaign_calls = [c for c in every_call if c["campaign_id"] == campaign["id"]]
    assert len(campaign_calls) == sum(m["attempts"] for m in members.values())
    assert {c["attempt"] for c in campaign_calls} == {1, 2}
    waiting = any(m["state"] == "pending" for m in members.values())
    assert (campaign["status"] == "completed") == (not waiting), campaign
