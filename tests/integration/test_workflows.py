"""Campaign wakes on the emulator: the template's state machine, executed by moto's interpreter."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config

from talkturo import workflows
from talkturo.local.emulator import Emulator
from talkturo.local.template import Stack

pytestmark = pytest.mark.integration

JOB = {"kind": "wake", "account_id": "acct_1", "campaign_id": "cmp_1", "reason": "retry"}


@pytest.fixture(params=["Asia/Tokyo", "America/New_York"])
def clock_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The machine's local time zone, east then west of UTC: a wake's time is UTC all the same."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def _queue(stack: Stack) -> str:
    return stack.physical["CampaignQueue"]


def _receive(stack: Stack, deadline_seconds: float) -> tuple[dict[str, Any], datetime] | None:
    """The next message of the campaign queue (deleted) and when it arrived, or None by then."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    deadline = time.monotonic() + deadline_seconds
    while (left := deadline - time.monotonic()) > 0:
        answer = sqs.receive_message(
            QueueUrl=_queue(stack), WaitTimeSeconds=max(1, min(20, int(left)))
        )
        for message in answer.get("Messages", []):
            arrived = datetime.now(UTC)
            sqs.delete_message(QueueUrl=_queue(stack), ReceiptHandle=message["ReceiptHandle"])
            return json.loads(message["Body"]), arrived
    return None


def _executions(stack: Stack) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    found: list[dict[str, Any]] = sfn.list_executions(
        stateMachineArn=stack.physical["CampaignWakeStateMachine"]
    )["executions"]
    return found


def _messages_left(stack: Stack) -> int:
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=_queue(stack),
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_a_wake_ahead_arrives_on_the_campaign_queue_at_its_time_not_before(
    stack: Stack, clock_zone: str
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=2)

    workflows.schedule_wake("cmp_1-retry-1", at, JOB)

    received = _receive(stack, deadline_seconds=15)
    assert received is not None, "the wake never arrived"
    job, arrived = received
    assert job == JOB
    assert arrived >= at
    (execution,) = _executions(stack)
    assert execution["name"] == "cmp_1-retry-1"


def test_the_same_wake_asked_for_twice_is_one_execution_and_one_message(stack: Stack) -> None:
    at = datetime.now(UTC) + timedelta(seconds=2)

    workflows.schedule_wake("cmp_1-retry-2", at, JOB)
    workflows.schedule_wake("cmp_1-retry-2", at, JOB)  # while it waits

    assert len(_executions(stack)) == 1
    assert _receive(stack, deadline_seconds=15) is not None
    deadline = time.monotonic() + 10
    while _executions(stack)[0]["status"] == "RUNNING" and time.monotonic() < deadline:
        pass  # its last event is recorded just after the message is sent
    assert _executions(stack)[0]["status"] == "SUCCEEDED"
    # The one execution has ended having sent one message: nothing else is on its way.
    assert _messages_left(stack) == 0


def test_a_wake_already_due_is_sent_at_once_without_an_execution(stack: Stack) -> None:
    workflows.schedule_wake("cmp_1-window-3", datetime.now(UTC) - timedelta(minutes=5), JOB)

    received = _receive(stack, deadline_seconds=1)
    assert received is not None and received[0] == JOB
    assert _executions(stack) == []


@pytest.mark.parametrize("name", ["", "has space", "x" * 81, "cmp_1/retry"])
def test_a_wake_name_step_functions_would_refuse_is_refused_here(stack: Stack, name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        workflows.schedule_wake(name, datetime.now(UTC) + timedelta(hours=1), JOB)


def test_a_wake_time_without_a_zone_is_refused(stack: Stack) -> None:
    with pytest.raises(ValueError, match="timezone"):
        workflows.schedule_wake("cmp_1-start-4", datetime.now() + timedelta(hours=1), JOB)


def test_step_functions_requests_never_wait_on_the_data_lock(
    emulator: Emulator, stack: Stack
) -> None:
    # An execution's own calls come back into the emulator; a workflow request held behind a
    # data request (or a snapshot, which holds every data request off) could wait on itself.
    sfn = boto3.client(
        "stepfunctions",
        region_name="us-east-1",
        config=Config(read_timeout=5, retries={"max_attempts": 1}),
    )
    with emulator.paused():
        described = sfn.describe_state_machine(
            stateMachineArn=stack.physical["CampaignWakeStateMachine"]
        )
    assert described["status"] == "ACTIVE"


def test_a_wake_still_arrives_after_another_emulator_of_the_process_stopped(stack: Stack) -> None:
    """moto's interpreter calls back on one global port: a second emulator that started and
    stopped in the same process must hand the executions back, not leave them a closed port."""
    Emulator().start().stop()
    at = datetime.now(UTC) + timedelta(seconds=2)

    workflows.schedule_wake("cmp_1-retry-4", at, JOB)

    assert len(_executions(stack)) == 1  # through the state machine, not sent at once
    assert _receive(stack, deadline_seconds=15) is not None, "the wake never arrived"
