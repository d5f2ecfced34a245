"""Calls on the local platform, as a user makes them: a simulated number bought and assigned over
the API, outbound calls placed with POST /v1/calls to simulated phones set up with
`talkturo call callee`, and simulated callers dialing in with `talkturo call dial`.

These check the records and outcomes; the conversations themselves (the voice service with the
offline stand-ins) are in test_conversation_local.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalPlatform, eventually

pytestmark = pytest.mark.e2e

# A no-answer callee rings until the platform's ring timeout (30 s, real time); the rest end
# within a couple of seconds (each callee rings 1 s and stays on the line 2 s at most).
# Answering-machine detection decides at once (--amd-seconds 0), so the voice service hangs up
# on the machine before it has said much.
CALL_ENDS_WITHIN_SECONDS = 60
NUMBER_ACTIVE_WITHIN_SECONDS = 30

# One simulated phone per behaviour (the simulator's callees are shared by the whole session,
# so these numbers are this module's alone).
CALLEES = {
    "human": "+14155550161",
    "no_answer": "+14155550162",
    "busy": "+14155550163",
    "failed": "+14155550164",
    "voicemail": "+14155550165",
}
OUTCOMES = {
    "human": "answered",
    "no_answer": "no_answer",
    "busy": "busy",
    "failed": "failed",
    "voicemail": "voicemail",
}
CALLER = "+12025550171"
STRANGER = "+12025550172"
NOT_AVAILABLE = "This number is not available right now. Goodbye."


@dataclass
class Line:
    """A fresh account with an active simulated number assigned to an assistant."""

    api_key: str
    assistant_id: str
    number_id: str
    phone_number: str


def buy_active_number(api: httpx.Client) -> dict[str, Any]:
    available = api.get(
        "/v1/phone-numbers/available", params={"country": "US", "area_code": "415", "limit": 1}
    )
    assert available.status_code == 200, available.text
    wanted = available.json()["data"][0]["phone_number"]
    bought = api.post("/v1/phone-numbers", json={"phone_number": wanted})
    assert bought.status_code == 202, bought.text
    assert bought.json()["status"] == "purchasing"
    number: dict[str, Any] = eventually(
        lambda: api.get(f"/v1/phone-numbers/{bought.json()['id']}").json(),
        lambda n: n["status"] != "purchasing",
        NUMBER_ACTIVE_WITHIN_SECONDS,
        "the number leaves purchasing",
    )
    assert number["status"] == "active", number
    return number


@pytest.fixture(scope="module")
def line(local_platform: LocalPlatform) -> Line:
    return new_line(local_platform, "Calls e2e")


def new_line(local_platform: LocalPlatform, account_name: str) -> Line:
    """A new account whose assistant answers an active simulated number."""
    key = local_platform.sign_up(account_name)["api_key"]["secret"]
    with local_platform.client(key) as api:
        created = api.post("/v1/assistants", json={"template": "custom", "name": "Front desk"})
        assert created.status_code == 201, created.text
        assistant = created.json()
        assert assistant["telephony"]["inbound_enabled"] is True
        assert assistant["telephony"]["outbound_enabled"] is True
        number = buy_active_number(api)
        assigned = api.post(
            f"/v1/phone-numbers/{number['id']}/assign", json={"assistant_id": assistant["id"]}
        )
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["assistant_id"] == assistant["id"]
    return Line(key, assistant["id"], number["id"], number["phone_number"])


@pytest.fixture(scope="module")
def outbound_calls(local_platform: LocalPlatform, line: Line) -> Iterator[dict[str, str]]:
    """One outbound call to a simulated phone of each behaviour, all placed at once (the
    no-answer one takes the ring timeout): {behaviour: call id}."""
    for behaviour, number in CALLEES.items():
        done = local_platform.cli(
            "call",
            "callee",
            number,
            "--behaviour",
            behaviour,
            "--ring-seconds",
            "1",
            "--talk-seconds",
            "2",
            "--amd-seconds",
            "0",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{number}: {behaviour}" in done.stdout
    calls = {}
    with local_platform.client(line.api_key) as api:
        for behaviour, number in CALLEES.items():
            placed = api.post(
                "/v1/calls", json={"assistant_id": line.assistant_id, "to_number": number}
            )
            assert placed.status_code == 201, placed.text
            assert placed.json()["status"] == "queued"
            calls[behaviour] = placed.json()["id"]
    yield calls
    for number in CALLEES.values():
        local_platform.cli("call", "callee", number, "--reset")


def ended_call(local_platform: LocalPlatform, line: Line, call_id: str) -> dict[str, Any]:
    with local_platform.client(line.api_key) as api:
        call: dict[str, Any] = eventually(
            lambda: api.get(f"/v1/calls/{call_id}").json(),
            lambda c: c.get("status") == "ended",
            CALL_ENDS_WITHIN_SECONDS,
            f"call {call_id} ends",
        )
    return call


@pytest.mark.parametrize("behaviour", list(CALLEES))
def test_an_outbound_call_ends_with_the_callees_outcome(
    local_platform: LocalPlatform, line: Line, outbound_calls: dict[str, str], behaviour: str
) -> None:
    call = ended_call(local_platform, line, outbound_calls[behaviour])

    assert call["direction"] == "outbound"
    assert call["status"] == "ended"
    assert call["outcome"] == OUTCOMES[behaviour], call
    assert call["to_number"] == CALLEES[behaviour]
    assert (call["from_number"], call["phone_number_id"], call["assistant_id"]) == (
        line.phone_number,
        line.number_id,
        line.assistant_id,
    )
    if behaviour in ("human", "voicemail"):
        assert call["answered_at"] is not None, call
        assert call["answered_by"] == ("machine" if behaviour == "voicemail" else "human"), call
    else:
        assert call["answered_at"] is None, call
        assert call["duration_seconds"] == 0
        assert call["ended_reason"] == behaviour, call


def test_the_calls_list_filters_outbound_calls_by_outcome(
    local_platform: LocalPlatform, line: Line, outbound_calls: dict[str, str]
) -> None:
    for call_id in outbound_calls.values():
        ended_call(local_platform, line, call_id)

    with local_platform.client(line.api_key) as api:
        listed = api.get("/v1/calls", params={"direction": "outbound", "limit": 100}).json()
        busy = api.get("/v1/calls", params={"outcome": "busy"}).json()

    by_id = {c["id"]: c["outcome"] for c in listed["data"]}
    assert by_id == {outbound_calls[b]: OUTCOMES[b] for b in CALLEES}
    assert [c["id"] for c in busy["data"]] == [outbound_calls["busy"]]


def dial(local_platform: LocalPlatform, to: str, from_: str) -> tuple[str, str]:
    """`talkturo call dial`: (the simulator's CallSid, what the command printed)."""
    done = local_platform.cli("call", "dial", "--to", to, "--from", from_, "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"Calling \S+ from \S+: (CA\w+)", done.stdout)
    assert found is not None, done.stdout
    return found[1], done.stdout


def test_a_simulated_caller_reaches_the_assistant_and_the_call_is_recorded(
    local_platform: LocalPlatform, line: Line
) -> None:
    sid, printed = dial(local_platform, line.phone_number, CALLER)

    assert "Call completed" in printed
    with local_platform.client(line.api_key) as api:
        calls = eventually(
            lambda: api.get(
                "/v1/calls", params={"direction": "inbound", "phone_number_id": line.number_id}
            ).json()["data"],
            lambda found: any(c["from_number"] == CALLER and c["status"] == "ended" for c in found),
            CALL_ENDS_WITHIN_SECONDS,
            "the inbound call is recorded and ended",
        )
    call = next(c for c in calls if c["from_number"] == CALLER)
    assert call["direction"] == "inbound"
    assert call["outcome"] == "answered", call
    assert (call["to_number"], call["assistant_id"]) == (line.phone_number, line.assistant_id)
    assert call["answered_at"] is not None
    # The platform connected the call to the voice service's media stream, with a token naming
    # the call, and the voice service took it.
    with local_platform.simulator() as simulator:
        report = simulator.get(f"/_sim/calls/{sid}").json()
    streams = report["party"]["streams"]
    assert [s["url"].rsplit("/", 1)[1] for s in streams] == ["media"], report
    assert streams[0]["parameters"].get("token"), report
    assert streams[0]["outcome"] != "connect_failed", report
    assert report["party"]["heard_audio_seconds"] > 0, report
    assert NOT_AVAILABLE not in printed


def test_a_call_to_an_unassigned_number_hears_not_available_and_leaves_no_record(
    local_platform: LocalPlatform,
) -> None:
    # A number of its own account (the free plan holds one), bought and left unassigned.
    key = local_platform.sign_up("Unassigned line")["api_key"]["secret"]
    with local_platform.client(key) as api:
        number = buy_active_number(api)
    assert number["assistant_id"] is None

    sid, printed = dial(local_platform, number["phone_number"], STRANGER)

    assert f'heard: "{NOT_AVAILABLE}"' in printed
    with local_platform.simulator() as simulator:
        report = simulator.get(f"/_sim/calls/{sid}").json()
    assert report["done"] is True
    assert {"kind": "say", "text": NOT_AVAILABLE} in report["party"]["heard"]
    assert report["party"]["streams"] == []
    with local_platform.client(key) as api:
        assert api.get("/v1/calls").json()["data"] == []
