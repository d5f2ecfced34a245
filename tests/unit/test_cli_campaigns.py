"""`talkturo campaigns`: the progress view, when watching stops, the campaign file, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

from talkturo import cli
from talkturo.cli_campaigns import idle_until, read_definition, render_contacts, render_progress

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def _progress(**changes: Any) -> dict[str, Any]:
    progress: dict[str, Any] = {
        "object": "campaign_progress",
        "campaign_id": "camp_1",
        "status": "running",
        "status_reason": None,
        "audience_status": "ready",
        "audience_total": 4,
        "counts": {
            "pending": 1,
            "queued": 0,
            "calling": 1,
            "completed": 1,
            "exhausted": 0,
            "skipped": 1,
        },
        "skipped": {"dnc": 0, "no_phone": 0, "outside_compliance": 0, "invalid_number": 1},
        "outcomes": {"answered": 1, "voicemail": 0, "no_answer": 0, "busy": 1, "error": 0},
        "answer_rate": 0.5,
        "completion_rate": 0.5,
        "in_flight": 1,
        "max_concurrent_calls": 2,
        "queue": [
            {
                "contact_id": "ct_1",
                "name": "Grace Hopper",
                "phone": "+12125550199",
                "next_attempt_at": (NOW + timedelta(seconds=45)).isoformat(),
                "attempt": 2,
            }
        ],
        "recent_calls": [
            {
                "call_id": "call_1",
                "contact_id": "ct_2",
                "attempt": 1,
                "status": "ended",
                "outcome": "answered",
                "created_at": NOW.isoformat(),
            }
        ],
    }
    progress.update(changes)
    return progress


def test_the_progress_view_shows_counts_rates_queue_and_calls() -> None:
    view = render_progress(_progress(), now=NOW)
    assert "Campaign camp_1: running" in view
    assert "1 pending, 0 queued, 1 calling, 1 completed, 0 exhausted, 1 skipped" in view
    assert "Calls in flight 1 of 2" in view
    assert "1 answered, 0 voicemail, 0 no answer, 1 busy, 0 error" in view
    assert "Answer rate 50% (voicemail excluded), done 50%" in view
    assert "Skipped: 1 invalid number" in view
    assert "Grace Hopper" in view and "attempt 2  in 45s" in view
    assert "call_1  attempt 1  answered" in view


def test_watching_stops_when_nothing_can_happen_for_a_while() -> None:
    later = (NOW + timedelta(hours=9)).isoformat()
    quiet = _progress(
        in_flight=0, queue=[{"contact_id": "ct_1", "next_attempt_at": later, "attempt": 1}]
    )
    assert idle_until(quiet, now=NOW) == "2026-12-03 00:00 UTC"
    assert idle_until(_progress(), now=NOW) is None  # a call in flight
    soon = _progress(in_flight=0)
    assert idle_until(soon, now=NOW) is None  # the next attempt is 45 s away
    assert idle_until({**quiet, "status": "paused"}, now=NOW) is None


def test_the_contacts_table() -> None:
    rows = [
        {
            "contact_id": "ct_1",
            "name": "Ada",
            "phone": "+14155550101",
            "state": "completed",
            "attempts": 1,
            "next_attempt_at": None,
            "last_outcome": "answered",
        },
        {
            "contact_id": "ct_2",
            "name": None,
            "phone": None,
            "state": "skipped",
            "skip_reason": "no_phone",
            "attempts": 0,
            "last_outcome": None,
        },
    ]
    table = render_contacts(rows, now=NOW).splitlines()
    assert table[0].split() == ["CONTACT", "PHONE", "STATE", "ATTEMPTS", "NEXT", "LAST", "OUTCOME"]
    assert table[1].split() == ["Ada", "+14155550101", "completed", "1", "-", "answered"]
    assert table[2].split() == ["ct_2", "-", "skipped", "(no_phone)", "0", "-", "-"]


def test_a_campaign_file_is_yaml_or_json(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"
    loaded = read_definition(example)
    assert loaded["audience"] == {"type": "filter", "tag": "launch"}
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps({"name": "x"}))
    assert read_definition(as_json) == {"name": "x"}
    broken = tmp_path / "c.yaml"
    broken.write_text("- just\n- a list\n")
    with pytest.raises(click.BadParameter):
        read_definition(broken)


def test_an_api_refusal_is_printed_with_its_code_and_param(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/campaigns/camp_1/pause"
        return httpx.Response(
            409,
            json={
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_campaign_transition",
                    "message": "a draft campaign cannot pause",
                    "param": "status",
                }
            },
        )

    real = cli._client

    def fake_client(api_url: str, token: str) -> httpx.Client:
        client = real(api_url, token)
        client._transport = httpx.MockTransport(answer)
        return client

    monkeypatch.setattr(cli, "_client", fake_client)
    run = CliRunner().invoke(cli.main, ["campaigns", "pause", "camp_1", "--api-key", "tk_x"])
    assert run.exit_code == 1
    assert "a draft campaign cannot pause" in run.output
    assert "invalid_campaign_transition" in run.output and "param: status" in run.output


def _api(routes: dict[str, list[dict[str, Any]]], seen: list[httpx.Request]) -> Any:
    """A fake API: each list route answers its items two a page; POST /v1/campaigns echoes."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST" and request.url.path == "/v1/campaigns":
            body = json.loads(request.content)
            return httpx.Response(201, json={"id": "camp_9", "audience_status": "ready", **body})
        items = routes[request.url.path]
        after = request.url.params.get("starting_after")
        start = 0 if after is None else [i["id"] for i in items].index(after) + 1
        page = items[start : start + 2]
        more = start + 2 < len(items)
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": page,
                "has_more": more,
                "next_cursor": page[-1]["id"] if more else None,
            },
        )

    return answer


def _fake_api(monkeypatch: pytest.MonkeyPatch, answer: Any) -> None:
    real = cli._client

    def fake_client(api_url: str, token: str) -> httpx.Client:
        client = real(api_url, token)
        client._transport = httpx.MockTransport(answer)
        return client

    monkeypatch.setattr(cli, "_client", fake_client)


ASSISTANTS = [
    {"id": "asst_1", "name": "Front desk"},
    {"id": "asst_2", "name": "Setter"},
    {"id": "asst_3", "name": "Twin"},
    {"id": "asst_4", "name": "Twin"},
]
NUMBERS = [
    {"id": "pn_1", "phone_number": "+14155550100"},
    {"id": "pn_2", "phone_number": "+14155550111"},
    {"id": "pn_3", "phone_number": "+14155550122"},
]


def test_create_takes_the_assistant_by_name_and_numbers_by_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []
    _fake_api(monkeypatch, _api({"/v1/assistants": ASSISTANTS, "/v1/phone-numbers": NUMBERS}, seen))
    file = tmp_path / "c.yaml"
    file.write_text(
        "name: Launch\nassistant: Setter\naudience: {type: filter, tag: launch}\n"
        "phone_number_ids: ['+14155550122', pn_1]\n"
    )
    run = CliRunner().invoke(cli.main, ["campaigns", "create", str(file), "--api-key", "tk_x"])
    assert run.exit_code == 0, run.output
    assert run.output.strip() == "camp_9"
    (created,) = [r for r in seen if r.method == "POST"]
    body = json.loads(created.content)
    assert body["assistant_id"] == "asst_2" and "assistant" not in body
    assert body["phone_number_ids"] == ["pn_3", "pn_1"]
    # The lists were read page by page, to the end (the assistant was on the first page).
    assert [r.url.params.get("starting_after") for r in seen if "numbers" in r.url.path] == [
        None,
        "pn_2",
    ]


def test_create_passes_ids_through_and_the_option_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []
    _fake_api(monkeypatch, _api({}, seen))
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"name": "x", "assistant_id": "asst_1", "audience": {}}))
    arguments = ["campaigns", "create", str(file), "--assistant", "asst_7", "--api-key", "tk_x"]
    run = CliRunner().invoke(cli.main, arguments)
    assert run.exit_code == 0, run.output
    assert [r.method for r in seen] == ["POST"]  # no look-ups for ids
    assert json.loads(seen[0].content)["assistant_id"] == "asst_7"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("assistant: Nobody\n", "no assistant is named 'Nobody'"),
        ("assistant: Twin\n", "2 assistants are named 'Twin'"),
        (
            "assistant_id: asst_1\nphone_number_ids: ['+19995550100']\n",
            "+19995550100 is not one of the account's phone numbers",
        ),
    ],
)
def test_create_refuses_a_name_or_number_it_cannot_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fields: str, message: str
) -> None:
    seen: list[httpx.Request] = []
    _fake_api(monkeypatch, _api({"/v1/assistants": ASSISTANTS, "/v1/phone-numbers": NUMBERS}, seen))
    file = tmp_path / "c.yaml"
    file.write_text("name: Launch\naudience: {type: filter}\n" + fields)
    run = CliRunner().invoke(cli.main, ["campaigns", "create", str(file), "--api-key", "tk_x"])
    assert run.exit_code == 1
    assert message in run.output
    assert not [r for r in seen if r.method == "POST"]  # nothing created
