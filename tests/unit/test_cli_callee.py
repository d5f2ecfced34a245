"""`talkturo call callee`: one behaviour for one or several simulated numbers."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from talkturo import cli

SIMULATOR = ["--account-sid", "AC1", "--auth-token", "t0ken"]


def _fake_simulator(monkeypatch: pytest.MonkeyPatch, seen: list[httpx.Request]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        body = json.loads(request.content)
        number = request.url.path.rsplit("/", 1)[1]
        shown = {"behaviour": "human", "ring_seconds": 2, "talk_seconds": 20, **body}
        return httpx.Response(200, json={"number": number, **shown})

    real = cli._simulator_client

    def fake(url: str, account_sid: str, auth_token: str) -> httpx.Client:
        client: httpx.Client = real(url, account_sid, auth_token)
        client._transport = httpx.MockTransport(answer)
        return client

    monkeypatch.setattr(cli, "_simulator_client", fake)


def test_several_numbers_get_the_same_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    _fake_simulator(monkeypatch, seen)
    arguments = ["call", "callee", "+18085550113", "+12065550123", "--behaviour", "busy"]
    run = CliRunner().invoke(cli.main, [*arguments, "--ring-seconds", "1", *SIMULATOR])
    assert run.exit_code == 0, run.output
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", "/_sim/callees/+18085550113"),
        ("PUT", "/_sim/callees/+12065550123"),
    ]
    assert {r.content for r in seen} == {b'{"behaviour":"busy","ring_seconds":1.0}'}
    assert run.output.splitlines() == [
        "+18085550113: busy (rings 1 s, stays 20 s)",
        "+12065550123: busy (rings 1 s, stays 20 s)",
    ]


def test_reset_forgets_each_number_and_a_number_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []
    _fake_simulator(monkeypatch, seen)
    arguments = ["call", "callee", "+18085550113", "+12065550123", "--reset", *SIMULATOR]
    run = CliRunner().invoke(cli.main, arguments)
    assert run.exit_code == 0, run.output
    assert [r.method for r in seen] == ["DELETE", "DELETE"]
    assert "+12065550123 answers as a human again." in run.output
    missing = CliRunner().invoke(cli.main, ["call", "callee", "--behaviour", "busy", *SIMULATOR])
    assert missing.exit_code == 2 and "NUMBER..." in missing.output
