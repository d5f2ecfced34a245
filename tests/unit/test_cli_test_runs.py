"""`talkturo test`: the report, the exit codes, bad input, and the example suites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from talkturo import cli, cli_test_runs
from talkturo.cli_test_runs import render_report
from talkturo.domain.test_runs import load_suite

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "layers" / "core" / "talkturo" / "data" / "templates.yaml"
EXAMPLES = ROOT / "examples" / "test-suites"

SUITE = """
name: booking
scenarios:
  - name: books
    caller: [{say: "Book me"}, hang_up]
    expect: {said: [booked], ended_reason: transferred}
"""


def _run(status: str, **changes: Any) -> dict[str, Any]:
    failed = status == "failed"
    return {
        "object": "test_run",
        "id": "trun_1",
        "assistant_id": "asst_1",
        "suite_name": "booking",
        "status": status,
        "scenario_count": 1,
        "completed": 0 if status in ("queued", "running") else 1,
        "passed": 0 if failed else 1,
        "failed": 1 if failed else 0,
        "errored": 0,
        "test_seconds": 42,
        "credits_charged": "0.0000",
        "results": [
            {
                "name": "books",
                "index": 0,
                "status": status,
                "call_id": "call_9",
                "ended_reason": "assistant_ended",
                "expectations": [
                    {
                        "kind": "said",
                        "passed": True,
                        "expected": "booked",
                        "detail": "said",
                        "lines": [
                            {
                                "index": 2,
                                "role": "assistant",
                                "text": "You're booked.",
                                "start_ms": 4200,
                            }
                        ],
                    },
                    {
                        "kind": "ended_reason",
                        "passed": not failed,
                        "expected": "transferred",
                        "detail": "ended assistant_ended, expected transferred",
                        "lines": [],
                    },
                ],
            }
        ],
        **changes,
    }


def test_the_report_marks_each_expectation_with_its_deciding_lines() -> None:
    report = render_report(_run("failed"))
    assert report.splitlines()[0].startswith("booking: FAILED — 0 passed, 1 failed")
    assert "✗ books (call call_9, ended assistant_ended)" in report
    assert "    ✓ said: booked — said" in report
    assert "        [2]    4.2s assistant: You're booked." in report
    assert "    ✗ ended_reason: transferred — ended assistant_ended, expected transferred" in report


class Api:
    """The API's test-run routes, answered from memory: queued, then running, then `final`."""

    def __init__(self, final: str, refuse: int | None = None) -> None:
        self.final = final
        self.refuse = refuse
        self.posted: list[Any] = []
        self.reads = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/assistants":
            page = {"data": [{"id": "asst_1", "name": "Support"}], "has_more": False}
            return httpx.Response(200, json=page)
        if request.method == "POST":
            if self.refuse:
                error = {
                    "type": "invalid_request_error",
                    "code": "x",
                    "message": "no",
                    "param": "p",
                }
                return httpx.Response(self.refuse, json={"error": error})
            self.posted.append(json.loads(request.content))
            return httpx.Response(202, json=_run("queued"))
        self.reads += 1
        return httpx.Response(200, json=_run("running" if self.reads == 1 else self.final))


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    return path


def _invoke(monkeypatch: pytest.MonkeyPatch, api: Api, *args: str) -> Any:
    monkeypatch.setattr(cli_test_runs, "POLL_SECONDS", 0)
    monkeypatch.setattr(
        cli,
        "_client",
        lambda url, key: httpx.Client(base_url=url, transport=httpx.MockTransport(api)),
    )
    return CliRunner().invoke(cli.main, ["test", *args, "--api-key", "tk_test"])


@pytest.mark.parametrize(("final", "code"), [("passed", 0), ("failed", 1), ("error", 1)])
def test_the_exit_code_says_whether_every_scenario_passed(
    monkeypatch: pytest.MonkeyPatch, suite_file: Path, final: str, code: int
) -> None:
    api = Api(final)
    result = _invoke(monkeypatch, api, "Support", str(suite_file))
    assert result.exit_code == code, result.output
    assert api.posted[0]["suite"]["name"] == "booking"  # the name was resolved to asst_1
    assert "1/1 scenarios done" in result.output


def test_bad_input_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suite_file: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nscenarios:\n  - name: a\n    caller: [{sing: la}]\n")
    result = _invoke(monkeypatch, Api("passed"), "asst_1", str(broken))
    assert result.exit_code == 2 and "unknown step" in result.output
    assert _invoke(monkeypatch, Api("passed"), "asst_1", str(tmp_path / "none.yaml")).exit_code == 2
    assert _invoke(monkeypatch, Api("passed"), "Nobody", str(suite_file)).exit_code == 2
    refused = _invoke(monkeypatch, Api("passed", refuse=422), "asst_1", str(suite_file))
    assert refused.exit_code == 2


def test_every_template_has_an_example_suite_that_parses() -> None:
    templates = [t["id"] for t in yaml.safe_load(TEMPLATES.read_text())["templates"]]
    shipped = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert shipped == sorted(templates)
    for path in EXAMPLES.glob("*.yaml"):
        suite = load_suite(path.read_text())
        assert suite.scenarios and all(
            s.expect.model_dump(exclude_defaults=True) for s in suite.scenarios
        )
