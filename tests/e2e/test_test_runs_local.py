"""Assistant test runs on the local platform, as a user runs them: a passing and a failing suite
through the API (their scenarios played as real simulated calls to the voice service, side by
side), then `talkturo test` and its exit codes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import LocalPlatform, talkturo_command

pytestmark = pytest.mark.e2e

GREETING = "Hello, this is the front desk."
CLOSING = "Thanks for calling. Goodbye."
RUN_WITHIN_SECONDS = 240

CALLER = {
    "max_seconds": 60,
    "steps": [
        {"wait_for_silence": {"seconds": 0.8, "timeout": 20}},
        {"say": "Hello, can you hear me?"},
        {"wait_for_silence": {"seconds": 1.0, "timeout": 30}},
        {"say": "That's all, thank you. Goodbye."},
        {"wait_for_silence": {"seconds": 1.0, "timeout": 30}},
        "hang_up",
    ],
}
PASSING = {
    "name": "front desk",
    "scenarios": [
        {
            "name": "greets and closes",
            "caller": CALLER,
            "expect": {
                "said": ["this is the front desk"],
                "never_said": ["/\\$\\s?\\d/"],
                "tools_not_called": ["transfer_call"],
                "ended_reason": ["assistant_ended", "caller_hung_up"],
            },
        }
    ],
}
FAILING = {
    "name": "front desk, too strict",
    "scenarios": [
        {
            "name": "must transfer",
            "caller": CALLER,
            "expect": {"said": ["this is the front desk"], "ended_reason": "transferred"},
        }
    ],
}


@pytest.fixture(scope="module")
def assistant(local_platform: LocalPlatform) -> tuple[str, str]:
    """A fresh account's assistant: (api key, assistant id)."""
    account = local_platform.sign_up("test runs e2e")
    key = account["api_key"]["secret"]
    with local_platform.client(key) as api:
        made = api.post(
            "/v1/assistants",
            json={
                "template": "custom",
                "name": "Front desk",
                "first_message": GREETING,
                "tools": [{"type": "end_call", "config": {"closing_message": CLOSING}}],
            },
        )
        assert made.status_code == 201, made.text
    return key, made.json()["id"]


def _finished(api: httpx.Client, assistant_id: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_WITHIN_SECONDS
    while True:
        run: dict[str, Any] = api.get(f"/v1/assistants/{assistant_id}/test-runs/{run_id}").json()
        if run["status"] in ("passed", "failed", "error") or time.monotonic() > deadline:
            return run
        time.sleep(1)  # the platform plays real calls: poll, as a client would


def test_a_passing_and_a_failing_suite_through_the_api(
    local_platform: LocalPlatform, assistant: tuple[str, str]
) -> None:
    key, assistant_id = assistant
    with local_platform.client(key) as api:
        runs = []
        for suite in (PASSING, FAILING):  # queued together: their calls run side by side
            answer = api.post(f"/v1/assistants/{assistant_id}/test-runs", json={"suite": suite})
            assert answer.status_code == 202, answer.text
            runs.append(answer.json()["id"])
        passing, failing = (_finished(api, assistant_id, run_id) for run_id in runs)
        assert passing["status"] == "passed", passing
        assert failing["status"] == "failed", failing
        (result,) = passing["results"]
        (said,) = [e for e in result["expectations"] if e["kind"] == "said"]
        assert said["passed"] and GREETING in said["lines"][0]["text"]
        assert result["billed_seconds"] > 0 and result["call_id"].startswith("call_")
        (missed,) = [e for e in failing["results"][0]["expectations"] if not e["passed"]]
        assert missed["kind"] == "ended_reason" and missed["expected"] == "transferred"
        # The scenario's call is a call record with its transcript, as any call
        call = api.get(f"/v1/calls/{result['call_id']}/transcript")
        assert call.status_code == 200, call.text
        # The test minutes were free (below the daily allowance): nothing on the ledger
        ledger = api.get("/v1/credits/ledger").json()["data"]
        assert not [e for e in ledger if e.get("reference") in runs]


def test_the_cli_reports_the_failed_expectation_and_exits_1_or_2(
    local_platform: LocalPlatform, assistant: tuple[str, str], tmp_path: Path
) -> None:
    key, _ = assistant
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(FAILING))
    environment = {**local_platform.cli_environment(), "TALKTURO_API_KEY": key}

    def talkturo_test(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [talkturo_command(), "test", "Front desk", str(path), "--timeout", "200"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=RUN_WITHIN_SECONDS,
            check=False,
        )

    failed = talkturo_test(suite)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "✗ must transfer" in failed.stdout
    assert "✗ ended_reason: transferred" in failed.stdout
    assert "✓ said: this is the front desk" in failed.stdout
    assert "1/1 scenarios done" in failed.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nscenarios: []\n")
    refused = talkturo_test(bad)
    assert refused.returncode == 2 and "scenarios" in refused.stderr
