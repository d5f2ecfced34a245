"""A campaign on the local platform, as a user runs one: contacts and simulated phones set up over
the API and the simulator's control API, the campaign created, started, paused and resumed over
/v1/campaigns, its calls placed by the engine through the carrier simulator and the voice
service, until it completes with every contact's attempt history.

One contact of each kind: one answers, one does not answer the first call and answers the
retry, one is busy twice (exhausted), one's voicemail picks up (not retried). The campaign
calls one at a time, so pausing while its first call is live shows that the call finishes and
nothing else is dialled until it resumes. Retries wait the real minimum delay (60 s), and the
unanswered call rings the platform's full 30 s: the test takes about two minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalPlatform, eventually
from tests.e2e.test_calls_local import Line, new_line
from tests.zones import awake_zone

pytestmark = pytest.mark.e2e

# The unanswered first call rings 30 s, the retries wait 60 s after their call: the campaign is
# done in about two minutes; this leaves room for a slow machine.
COMPLETES_WITHIN_SECONDS = 300
# The engine dials a due contact as soon as a slot frees, within a second or two.
DIALS_WITHIN_SECONDS = 30
# How long a paused campaign is watched for a dial it must not make, after the end of its live
# call (whose end is what would have dialled the next contact at once).
PAUSED_WATCH_SECONDS = 5

# This module's own simulated phones (the simulator's callees are shared by the session).
ANN, NED, BEA, VAL = "+14155550181", "+14155550182", "+14155550183", "+14155550184"
CALLEES = {
    ANN: {"behaviour": "human", "ring_seconds": 1, "talk_seconds": 3},
    NED: {"behaviour": "no_answer"},
    BEA: {"behaviour": "busy"},
    VAL: {"behaviour": "voicemail", "ring_seconds": 1, "amd_seconds": 0},
}


@pytest.fixture(scope="module")
def line(local_platform: LocalPlatform) -> Line:
    return new_line(local_platform, "Campaigns e2e")


@pytest.fixture(scope="module")
def phones(local_platform: LocalPlatform) -> Iterator[None]:
    with local_platform.simulator() as simulator:
        for number, behaviour in CALLEES.items():
            answer = simulator.put(f"/_sim/callees/{number}", json=behaviour)
            assert answer.status_code == 200, answer.text
        yield
        for number in CALLEES:
            simulator.delete(f"/_sim/callees/{number}")


def _contacts(api: httpx.Client) -> dict[str, str]:
    """The four contacts, tagged `e2e-campaign`, in a zone awake now: {phone: contact id}."""
    zone = awake_zone()
    made = {}
    for name, phone in (("Ann", ANN), ("Ned", NED), ("Bea", BEA), ("Val", VAL)):
        answer = api.post(
            "/v1/contacts",
            json={"first_name": name, "phone": phone, "timezone": zone, "tags": ["e2e-campaign"]},
        )
        assert answer.status_code == 201, answer.text
        made[phone] = answer.json()["id"]
    return made


def _calls(api: httpx.Client, campaign_id: str) -> list[dict[str, Any]]:
    answer = api.get("/v1/calls", params={"campaign_id": campaign_id, "limit": 100})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def _member(api: httpx.Client, campaign_id: str, contact_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/campaigns/{campaign_id}/contacts/{contact_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _act(api: httpx.Client, campaign_id: str, verb: str) -> dict[str, Any]:
    answer = api.post(f"/v1/campaigns/{campaign_id}/{verb}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_campaign_runs_through_the_simulator_pauses_resumes_and_completes(
    local_platform: LocalPlatform, line: Line, phones: None
) -> None:
    with local_platform.client(line.api_key) as api, local_platform.simulator() as simulator:
        ids = _contacts(api)
        created = api.post(
            "/v1/campaigns",
            json={
                "name": "E2E launch",
                "assistant_id": line.assistant_id,
                "audience": {"type": "filter", "tag": "e2e-campaign"},
                "call_window": {"allow_anytime": True},
                "max_concurrent_calls": 1,
                "max_attempts": 2,
                "retry": {
                    "outcomes": ["no_answer", "busy"],
                    "delays": {"no_answer": 60, "busy": 60},
                },
            },
        )
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        assert created.json()["status"] == "draft"
        ready = eventually(
            lambda: api.get(f"/v1/campaigns/{campaign_id}").json(),
            lambda c: c["audience_status"] == "ready",
            DIALS_WITHIN_SECONDS,
            "the audience is gathered",
        )
        assert ready["audience_total"] == 4 and ready["counts"]["pending"] == 4

        assert _act(api, campaign_id, "start")["status"] == "running"
        (first,) = eventually(
            lambda: _calls(api, campaign_id),
            lambda calls: len(calls) >= 1,
            DIALS_WITHIN_SECONDS,
            "the first call is placed",
        )
        assert first["attempt"] == 1 and first["contact_id"] in ids.values()
        paused = _act(api, campaign_id, "pause")
        assert paused["status"] == "paused" and paused["status_reason"] == "paused by the user"
        # Pausing again is refused, naming the status.
        again = api.post(f"/v1/campaigns/{campaign_id}/pause")
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "invalid_campaign_transition"
        assert "paused" in again.json()["error"]["message"]
        # The live call goes on to its end, which is applied to its contact.
        eventually(
            lambda: _member(api, campaign_id, first["contact_id"]),
            lambda m: m["state"] not in ("queued", "calling") and m["last_outcome"] is not None,
            COMPLETES_WITHIN_SECONDS,
            "the first call ends while paused",
        )
        # A call's end dials the next due contact at once; paused, nothing is dialled.
        deadline = time.monotonic() + PAUSED_WATCH_SECONDS
        while time.monotonic() < deadline:
            assert len(_calls(api, campaign_id)) == 1, "a paused campaign placed a call"
        progress = api.get(f"/v1/campaigns/{campaign_id}/progress").json()
        assert progress["status"] == "paused" and progress["in_flight"] == 0
        assert sum(progress["outcomes"].values()) == 1
        assert progress["counts"]["pending"] >= 3 and len(progress["queue"]) >= 3
        assert [c["call_id"] for c in progress["recent_calls"]] == [first["id"]]

        assert _act(api, campaign_id, "resume")["status"] == "running"
        ned = eventually(
            lambda: _member(api, campaign_id, ids[NED]),
            lambda m: m["attempts"] == 1 and m["state"] == "pending",
            COMPLETES_WITHIN_SECONDS,
            "Ned does not answer, and waits for his retry",
        )
        assert ned["last_outcome"] == "no_answer" and ned["next_attempt_at"] is not None
        # He answers the retry.
        answer = simulator.put(
            f"/_sim/callees/{NED}",
            json={"behaviour": "human", "ring_seconds": 1, "talk_seconds": 2},
        )
        assert answer.status_code == 200, answer.text

        done = eventually(
            lambda: api.get(f"/v1/campaigns/{campaign_id}").json(),
            lambda c: c["status"] == "completed",
            COMPLETES_WITHIN_SECONDS,
            "the campaign completes",
        )
        assert done["counts"] == {
            "pending": 0,
            "queued": 0,
            "calling": 0,
            "completed": 2,
            "exhausted": 2,
            "skipped": 0,
        }
        assert done["outcomes"] == {
            "answered": 2,
            "voicemail": 1,
            "no_answer": 1,
            "busy": 2,
            "error": 0,
        }
        assert done["answer_rate"] == pytest.approx(2 / 5)  # voicemail excluded
        assert done["completion_rate"] == 1.0
        assert done["completed_at"] is not None

        members = {
            m["contact_id"]: m
            for m in api.get(f"/v1/campaigns/{campaign_id}/contacts").json()["data"]
        }
        expected = {
            ANN: ("completed", ["answered"]),
            NED: ("completed", ["no_answer", "answered"]),
            BEA: ("exhausted", ["busy", "busy"]),
            VAL: ("exhausted", ["voicemail"]),
        }
        calls = {c["id"]: c for c in _calls(api, campaign_id)}
        assert len(calls) == 6
        for phone, (state, outcomes) in expected.items():
            member = members[ids[phone]]
            assert member["state"] == state, member
            assert [a["outcome"] for a in member["history"]] == outcomes, member
            assert member["attempts"] == len(outcomes)
            for number, attempt in enumerate(member["history"], start=1):
                assert attempt["attempt"] == number
                assert attempt["rule"].endswith(f"DNC checked; attempt {number} of 2"), attempt
                assert "federal 08:00-21:00" in attempt["rule"], attempt
                local = datetime.fromisoformat(attempt["local_time"])
                assert 8 <= local.hour < 21, attempt
                call = calls[attempt["call_id"]]
                assert (call["contact_id"], call["attempt"]) == (ids[phone], number)
                assert call["campaign_id"] == campaign_id and call["to_number"] == phone
        # One caller ID for the whole campaign, the assistant's number.
        assert {c["from_number"] for c in calls.values()} == {line.phone_number}
        # A retry waited its delay after the call before it.
        ned = members[ids[NED]]
        retried = datetime.fromisoformat(ned["history"][1]["dialed_at"])
        waited = retried - datetime.fromisoformat(ned["history"][0]["dialed_at"])
        assert waited.total_seconds() >= 60, ned

        # Terminal: no way back.
        refused = api.post(f"/v1/campaigns/{campaign_id}/resume")
        assert refused.status_code == 409, refused.text
        assert "completed" in refused.json()["error"]["message"]

        # The CLI shows the same: one frame of the progress view, the contacts' table.
        env = {"TALKTURO_API_KEY": line.api_key}
        view = local_platform.cli("campaigns", "watch", campaign_id, "--once", **env)
        assert view.returncode == 0, view.stdout + view.stderr
        assert f"Campaign {campaign_id}: completed" in view.stdout
        assert "2 answered" in view.stdout and "2 busy" in view.stdout
        table = local_platform.cli(
            "campaigns", "contacts", campaign_id, "--state", "exhausted", **env
        )
        assert table.returncode == 0, table.stdout + table.stderr
        rows = table.stdout.splitlines()[1:]
        assert sorted(r.split()[0] for r in rows) == ["Bea", "Val"]
