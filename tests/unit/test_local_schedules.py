"""The local platform's schedule runner: template.yaml's `Schedule` events, run in-process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from talkturo.local.schedules import ScheduleRunner, rate_seconds, scheduled_functions
from talkturo.local.template import Function, Stack, load_template, provision


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 hour)", 3600.0),
        ("rate(5 minutes)", 300.0),
        ("rate(1 minute)", 60.0),
        ("rate(2 days)", 172_800.0),
        ("rate(0 minutes)", None),
        ("cron(0 * * * ? *)", None),
        ("every hour", None),
    ],
)
def test_rate_expressions(expression: str, seconds: float | None) -> None:
    assert rate_seconds(expression) == seconds


class _Offline:
    """Enough of a boto3 session for provision() to read the template without an emulator."""

    def client(self, name: str, region_name: str) -> object:
        return _Client()


class _Client:
    def __getattr__(self, name: str) -> object:
        def call(**kwargs: object) -> dict[str, object]:
            url = f"http://queue/{kwargs.get('QueueName', 'q')}"
            return {
                "QueueUrl": url,
                "Attributes": {"QueueArn": "arn:aws:sqs:::q"},
                "stateMachineArn": f"arn:aws:states:::stateMachine:{kwargs.get('name')}",
            }

        return call


def test_the_template_schedules_the_trial_expiry_call_timeouts_and_the_campaign_tick() -> None:
    stack = provision(_Offline(), template=load_template())
    schedules = scheduled_functions(stack)
    assert sorted((s.function.logical_id, s.every_seconds) for s in schedules) == [
        ("CallTimeoutFunction", 300.0),
        ("CampaignTickFunction", 60.0),
        ("EventDeliveryFunction", 60.0),
        ("NumberExpiryFunction", 3600.0),
        ("NumberRenewalFunction", 3600.0),
    ]


def test_a_scheduled_function_runs_soon_after_start_then_at_its_rate(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "calls = []\n"
        "def handler(event, context):\n"
        "    calls.append(event['detail-type'])\n"
        "    if len(calls) == 2:\n"
        "        raise RuntimeError('a failing run does not stop the schedule')\n"
        "    return {'ok': True}\n"
    )
    function = Function(
        logical_id="Tick",
        code_dir=tmp_path,
        handler="app.handler",
        environment={},
        schedules=["rate(1 minute)"],
    )
    stack = Stack(name="t", functions={"Tick": function})
    runner = ScheduleRunner(stack, first_run_after=0.01)
    assert len(runner.schedules) == 1
    # Speed the rate up for the test: every 20 ms
    runner.schedules[0] = type(runner.schedules[0])(function, "rate(1 minute)", 0.02)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while runner.runs.get("Tick", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.alive()
    finally:
        runner.stop()
    assert runner.runs["Tick"] >= 3
    assert not runner.alive() or runner._threads == []
