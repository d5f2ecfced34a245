"""The README's tour, run as written against the local platform: the README stays true."""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.e2e.conftest import LocalPlatform, eventually, free_port

ROOT = Path(__file__).resolve().parents[2]


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A tour of the API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 4, "the tour lost its examples"
    return "\n".join(blocks)


def inbox_command() -> str:
    """The event inbox as "See events arrive" starts it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## See events arrive", 1)[1].split("\n## ", 1)[0]
    (command,) = re.findall(r"^(\.venv/bin/talkturo events listen.*)$", section, flags=re.M)
    return command


def test_the_readme_tour_works_as_written(local_platform: LocalPlatform, tmp_path: Path) -> None:
    # Given a newcomer's fresh account and the tour's commands, verbatim
    signed_up = local_platform.sign_up("README tour")
    key = signed_up["api_key"]["secret"]
    environment = {**local_platform.cli_environment(), "TALKTURO_API_KEY": key}
    began = datetime.now(UTC)
    # And the event inbox of "See events arrive" in a second terminal (on a free port)
    inbox_log = tmp_path / "inbox.log"
    with inbox_log.open("w") as out:
        inbox = subprocess.Popen(
            ["bash", "-c", f"exec {inbox_command()} --port {free_port()}"],
            cwd=ROOT,
            env={**environment, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        eventually(inbox_log.read_text, lambda t: "waiting for events" in t, 30, "the inbox")

        # When they run the tour in a shell, from the project folder
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", tour_script()],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        # Then the call's events arrive at the inbox, signed
        analysed = _analysis_call(local_platform.client(key))
        eventually(
            inbox_log.read_text,
            lambda t: _arrived(t, analysed) >= {"call.started", "call.ended", "call.analyzed"},
            60,
            "the analysed call's events at the inbox",
        )
    finally:
        inbox.send_signal(signal.SIGINT)
        inbox.wait(timeout=30)

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
    # met inbound switched off: she heard "not available", and no call was recorded), the
    # scripted caller's conversation ended by the assistant's end_call tool, and Ada's long
    # call during which auto-reload fired.
    assert "This number is not available right now. Goodbye." in run.stdout
    by_name = {c["first_name"]: c["id"] for c in contacts}
    every_call = api.get("/v1/calls", params={"limit": 100}).json()["data"]
    calls = [c for c in every_call if c["campaign_id"] is None]
    assert [
        (c["direction"], c["status"], c["outcome"], c["contact_id"], c["assistant_id"])
        for c in calls
    ] == [
        ("outbound", "ended", "answered", by_name["Ada"], assistants[0]["id"]),
        ("inbound", "ended", "answered", by_name["Nancy"], assistants[0]["id"]),
        ("inbound", "ended", "answered", None, assistants[0]["id"]),
        ("inbound", "ended", "answered", by_name["Nancy"], assistants[0]["id"]),
        ("outbound", "ended", "busy", by_name["Grace"], assistants[0]["id"]),
        ("outbound", "ended", "answered", by_name["Ada"], assistants[0]["id"]),
    ]
    assert {c["phone_number_id"] for c in calls} == {numbers[0]["id"]}
    assert assistants[0]["telephony"]["inbound_enabled"] is True
    conversation = calls[2]
    assert conversation["ended_reason"] == "assistant_ended" and "assistant_ended" in run.stdout
    recording = Path(ROOT, "call.wav")
    assert conversation["recording_available"] and recording.stat().st_size > 1000
    recording.unlink()
    transcript = api.get(f"/v1/calls/{conversation['id']}/transcript").json()["messages"]
    assert any(m["interrupted"] for m in transcript), transcript
    # The answered calls drew credits while they ran: the ledger holds their usage.
    ledger = api.get("/v1/credits/ledger", params={"limit": 100}).json()["data"]
    assert ledger[-1]["kind"] == "grant"
    # The package bought once, although every Stripe event was sent three times, then one
    # auto-reload with the card saved at that checkout
    reloaded, payment = api.get("/v1/credits/payments").json()["data"]
    assert (payment["amount_cents"], payment["credits"]) == (5000, "105.0000")
    assert not payment["auto_reload"]
    bought = sorted((e["kind"], e["amount"]) for e in ledger if e["reference"] == payment["id"])
    assert bought == [("bonus", "5.0000"), ("purchase", "100.0000")]
    assert api.get("/v1/account").json()["plan"] == "paid"
    _check_auto_reload(api, reloaded, ledger, calls[0], run.stdout)
    # Calls' usage (a number's rent is usage too, referenced by the number)
    calls_usage = [
        e for e in ledger if e["kind"] == "usage" and (e["reference"] or "").startswith("call_")
    ]
    usage = -sum(Decimal(e["amount"]) for e in calls_usage)
    assert usage > 0
    assert usage == sum(Decimal(c["credits_charged"]) for c in every_call)
    _check_analysis(api, calls[1], by_name["Nancy"])
    _check_campaign(api, by_name, every_call, began, run.stdout)


def _check_auto_reload(
    api: Any,
    reloaded: dict[str, Any],
    ledger: list[dict[str, Any]],
    long_call: dict[str, Any],
    printed: str,
) -> None:
    """The billing section: one reload of pkg_10 fired during Ada's long call (its credits
    landed while she talked), once, and auto-reload is armed again."""
    settings = api.get("/v1/credits/auto-reload").json()
    assert (settings["enabled"], settings["state"]) == (True, "armed")
    assert settings["package"] == "pkg_10"
    assert (settings["reloads"], settings["reloaded_this_month"]) == (1, "20.0000")
    assert settings["pending"] is None and settings["last_failure"] is None
    assert reloaded["auto_reload"] and (reloaded["amount_cents"], reloaded["credits"]) == (
        1000,
        "20.0000",
    )
    (entry,) = [e for e in ledger if e["reference"] == reloaded["id"]]
    assert (entry["kind"], entry["amount"]) == ("purchase", "20.0000")
    landed = datetime.fromisoformat(entry["created_at"])
    answered = datetime.fromisoformat(long_call["answered_at"])
    assert answered < landed < datetime.fromisoformat(long_call["ended_at"]), (entry, long_call)
    # What the tour printed: the state while the call ran, then the settings
    assert "Auto-reload on: armed" in printed and "reloads      1" in printed
    watched = re.findall(r"^(\S+) credits, auto-reload (\w+)$", printed, flags=re.M)
    balances = [Decimal(balance) for balance, _ in watched]
    assert balances and max(balances) - min(balances) > 19, watched  # the reload, mid-call


def _analysis_call(api: Any) -> str:
    """The tour's call from Nancy with the analysis caller's script: the newest inbound one
    outside the campaign."""
    calls = api.get("/v1/calls", params={"direction": "inbound", "limit": 10}).json()["data"]
    return str(next(c["id"] for c in calls if c["campaign_id"] is None))


def _arrived(log: str, call_id: str) -> set[str]:
    """The event types the inbox printed about `call_id`, verified."""
    lines = log.splitlines()
    return {
        line.split()[1]
        for line, about in itertools.pairwise(lines)
        if "✓ signature verified" in line and f"call {call_id}," in about
    }


def _check_analysis(api: Any, call: dict[str, Any], nancy: str) -> None:
    """The analysis section: the call is analysed (offline), the meeting day the caller said
    is on Nancy's contact with the words it came from; the email is written only with the
    words it came from (the offline transcriber rarely hears one)."""
    brief = call["analysis"]
    assert brief["status"] == "completed" and brief["method"] == "offline", brief
    analysis = api.get(f"/v1/calls/{call['id']}/analysis").json()
    assert analysis["summary"] and analysis["version"] == 1
    assert analysis["success"]["passed"] is None  # not evaluated offline, and it says so
    assert analysis["success"]["reason"] == "not evaluated offline"
    changes = {c["key"]: c for c in analysis["crm_changes"]}
    messages = api.get(f"/v1/calls/{call['id']}/transcript").json()["messages"]
    day = changes["meeting_day"]
    assert day["status"] == "written" and day["field_created"], day
    assert messages[day["evidence"]["turn"]]["role"] == "user"
    assert day["evidence"]["quote"] == messages[day["evidence"]["turn"]]["text"]
    assert "friday" in day["evidence"]["quote"].lower()
    said_on = datetime.fromisoformat(call["answered_at"] or call["created_at"]).astimezone(
        ZoneInfo("America/New_York")
    )
    meeting = date.fromisoformat(day["new"])
    assert meeting.weekday() == 4 and 0 < (meeting - said_on.date()).days <= 7, day
    email = changes["email"]
    assert email["status"] in ("written", "abstained"), email
    contact = api.get(f"/v1/contacts/{nancy}").json()
    assert contact["custom"]["meeting_day"] == day["new"]
    assert contact["email"] == (email["new"] if email["status"] == "written" else None)
    if email["status"] == "written":
        assert email["evidence"]["quote"] == messages[email["evidence"]["turn"]]["text"]
    (entry,) = [
        a
        for a in api.get(f"/v1/contacts/{nancy}/activity").json()["data"]
        if a["type"] == "fields_updated" and a["call_id"] == call["id"]
    ]
    written = {c["field"]: c for c in entry["changes"]}
    assert written["custom.meeting_day"]["quote"] == day["evidence"]["quote"]
    assert written["custom.meeting_day"]["new"] == day["new"]


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
    api: Any,
    by_name: dict[str, str],
    every_call: list[dict[str, Any]],
    began: datetime,
    printed: str,
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
    # Its cap, never reached, and what its calls spent against it
    assert campaign["credit_cap"] == "50.0000"
    budget = api.get(f"/v1/campaigns/{campaign['id']}/progress").json()["budget"]
    spent = sum(Decimal(c["credits_charged"]) for c in campaign_calls)
    assert (Decimal(budget["spent"]), Decimal(budget["remaining"])) == (spent, 50 - spent)
    assert '"cap_covers":' in printed and '"credit_cap": "50.0000"' in printed
