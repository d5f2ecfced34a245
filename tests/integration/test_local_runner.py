"""The SQS runner of the local platform behaves as Lambda's SQS poller does.

Each test writes a throwaway handler module, creates a queue and its dead-letter queue in the
emulator (visibility timeout 0, so a failed message is visible again at once), and steps the
runner with `poll_once()`; nothing waits on the clock.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from talkturo.local.emulator import Emulator
from talkturo.local.runner import LONG_WAIT_SECONDS, SqsRunner
from talkturo.local.template import Function, SqsEventSource, Stack

pytestmark = pytest.mark.integration

HANDLER = """
import json
import os
import pathlib

SEEN = pathlib.Path(__file__).with_name("seen.jsonl")


def handler(event, context):
    with SEEN.open("a") as out:
        out.write(json.dumps({
            "pid": os.getpid(),
            "event": event,
            "context": {
                "function_name": context.function_name,
                "aws_request_id": context.aws_request_id,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "invoked_function_arn": context.invoked_function_arn,
                "remaining_ms": context.get_remaining_time_in_millis(),
            },
        }) + "\\n")
    failures = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        if body.get("raise"):
            raise RuntimeError("the handler broke")
        if body.get("exit"):
            os._exit(3)  # the process dies mid-batch
        if body.get("malformed"):
            return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}
        if body.get("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

_names = itertools.count(1)


@dataclass
class Worker:
    runner: SqsRunner
    sqs: Any
    queue_url: str
    queue_arn: str
    dlq_url: str
    code_dir: Path

    def send(self, **body: Any) -> str:
        answer = self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))
        return str(answer["MessageId"])

    def bodies(self, url: str | None = None) -> list[dict[str, Any]]:
        """Every message now on the queue (read without consuming: visibility is 0)."""
        answer = self.sqs.receive_message(
            QueueUrl=url or self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    def waiting(self) -> int:
        """How many messages the queue holds (without receiving, which would count)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def calls(self) -> list[dict[str, Any]]:
        seen = self.code_dir / "seen.jsonl"
        if not seen.exists():
            return []
        return [json.loads(line) for line in seen.read_text().splitlines()]


def _worker(
    tmp_path: Path,
    *,
    partial_failures: bool = True,
    max_receive_count: int = 2,
    own_process: bool = False,
) -> Worker:
    code_dir = tmp_path / "worker"
    code_dir.mkdir()
    (code_dir / "app.py").write_text(HANDLER)
    sqs = boto3.client("sqs", region_name="us-east-1")
    n = next(_names)
    dlq_url = sqs.create_queue(QueueName=f"runner-{n}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    queue_url = sqs.create_queue(
        QueueName=f"runner-{n}",
        Attributes={"VisibilityTimeout": "0", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    function = Function(
        logical_id="WorkerFunction",
        code_dir=code_dir,
        handler="app.handler",
        environment={},
        sqs_sources=["WorkQueue"],
        sqs_events=[
            SqsEventSource(
                queue="WorkQueue", batch_size=10, report_batch_item_failures=partial_failures
            )
        ],
        timeout_seconds=30,
        memory_mb=256,
    )
    stack = Stack(
        name=f"runner-test-{n}",
        physical={"WorkQueue": queue_url, "WorkDeadLetterQueue": dlq_url},
        arns={"WorkQueue": queue_arn, "WorkDeadLetterQueue": dlq_arn},
        functions={"WorkerFunction": function},
    )
    own = frozenset({"WorkerFunction"}) if own_process else frozenset()
    runner = SqsRunner(stack, sqs_client=sqs, own_process=own)
    return Worker(runner, sqs, queue_url, queue_arn, dlq_url, code_dir)


# Every behaviour alike with the handler in the runner's process and in one of its own.
@pytest.fixture(params=["in-process", "own-process"])
def worker(emulator: Emulator, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Worker]:
    made = _worker(tmp_path, own_process=request.param == "own-process")
    yield made
    made.runner.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_an_own_process_function_keeps_one_process_for_its_batches(
    emulator: Emulator, tmp_path: Path
) -> None:
    worker = _worker(tmp_path, own_process=True)
    try:
        worker.send(n=1)
        assert worker.runner.poll_once() == 1
        worker.send(n=2)
        assert worker.runner.poll_once() == 1
        first, second = worker.calls()
        assert first["pid"] == second["pid"] != os.getpid()
        assert worker.bodies() == []
    finally:
        worker.runner.stop()
    assert not _alive(first["pid"])  # stopping the runner ends it


def test_an_own_process_that_dies_leaves_its_batch_and_the_next_gets_a_new_one(
    emulator: Emulator, tmp_path: Path
) -> None:
    worker = _worker(tmp_path, own_process=True)
    try:
        worker.send(n=1, exit=True)
        assert worker.runner.poll_once() == 1
        [died] = worker.calls()
        assert worker.bodies() == [{"n": 1, "exit": True}]  # back on the queue, as on Lambda
        worker.sqs.purge_queue(QueueUrl=worker.queue_url)
        worker.send(n=2)
        assert worker.runner.poll_once() == 1
        assert worker.calls()[-1]["pid"] not in (died["pid"], os.getpid())
        assert worker.bodies() == []
    finally:
        worker.runner.stop()


def test_a_message_that_succeeds_is_deleted(worker: Worker) -> None:
    worker.send(n=1)

    assert worker.runner.poll_once() == 1

    assert worker.bodies() == []
    assert worker.bodies(worker.dlq_url) == []
    assert len(worker.calls()) == 1


def test_a_partial_failure_leaves_only_the_failed_message(worker: Worker) -> None:
    worker.send(n=1)
    failed_id = worker.send(n=2, fail=True)
    worker.send(n=3)

    assert worker.runner.poll_once() == 3

    # One invocation saw the whole batch; only the failed message is left.
    [call] = worker.calls()
    assert {r["messageId"] for r in call["event"]["Records"]} >= {failed_id}
    assert len(call["event"]["Records"]) == 3
    assert worker.bodies() == [{"n": 2, "fail": True}]


def test_a_handler_exception_leaves_the_whole_batch(worker: Worker) -> None:
    worker.send(n=1)
    worker.send(n=2, **{"raise": True})

    assert worker.runner.poll_once() == 2

    assert sorted(b["n"] for b in worker.bodies()) == [1, 2]


def test_a_malformed_failure_list_fails_the_whole_batch(worker: Worker) -> None:
    worker.send(n=1, malformed=True)
    worker.send(n=2)

    worker.runner.poll_once()

    assert sorted(b["n"] for b in worker.bodies()) == [1, 2]


def test_after_max_receive_count_failures_the_message_lands_in_the_dlq(worker: Worker) -> None:
    worker.send(n=1, fail=True)

    # maxReceiveCount is 2: delivered twice, failed twice...
    assert worker.runner.poll_once() == 1
    assert worker.runner.poll_once() == 1
    # ...and on the next receive the queue's redrive moves it to the dead-letter queue.
    assert worker.runner.poll_once() == 0

    counts = [
        c["event"]["Records"][0]["attributes"]["ApproximateReceiveCount"] for c in worker.calls()
    ]
    assert counts == ["1", "2"]
    assert worker.bodies() == []
    assert worker.bodies(worker.dlq_url) == [{"n": 1, "fail": True}]


def test_the_event_and_context_are_shaped_like_lambdas(worker: Worker) -> None:
    message_id = worker.sqs.send_message(
        QueueUrl=worker.queue_url,
        MessageBody='{"n": 1}',
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "chunk"}},
    )["MessageId"]

    worker.runner.poll_once()

    [call] = worker.calls()
    [record] = call["event"]["Records"]
    assert record["messageId"] == message_id
    assert record["receiptHandle"]
    assert record["body"] == '{"n": 1}'
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert "SentTimestamp" in record["attributes"]
    assert record["messageAttributes"]["kind"]["stringValue"] == "chunk"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == worker.queue_arn
    assert record["awsRegion"] == "us-east-1"
    context = call["context"]
    assert context["function_name"].endswith("-WorkerFunction")
    assert context["invoked_function_arn"].startswith("arn:aws:lambda:us-east-1:")
    assert context["memory_limit_in_mb"] == 256
    assert context["aws_request_id"]
    assert 0 < context["remaining_ms"] <= 30_000


def test_without_report_batch_item_failures_the_answer_is_ignored(
    emulator: Emulator, tmp_path: Path
) -> None:
    # As on Lambda: the failure list only counts when the function reports batch item failures.
    worker = _worker(tmp_path, partial_failures=False)
    worker.send(n=1, fail=True)

    worker.runner.poll_once()

    assert worker.bodies() == []


def test_a_missing_handler_module_is_logged_and_the_runner_carries_on(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    (worker.code_dir / "app.py").unlink()
    worker.send(n=1)

    assert worker.runner.poll_once() == 1

    assert worker.waiting() == 1
    assert "handler failed" in caplog.text
    # The file appears (a developer creates it): the next delivery runs it.
    (worker.code_dir / "app.py").write_text(HANDLER)
    assert worker.runner.poll_once() == 1
    assert worker.waiting() == 0
    assert worker.bodies(worker.dlq_url) == []


def _wait_for_a_call(worker: Worker) -> None:
    deadline = time.monotonic() + 10
    while not worker.calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(worker.calls()) == 1


def test_started_in_the_background_it_delivers_and_stops_quickly(worker: Worker) -> None:
    worker.runner.start()
    worker.send(n=1)

    _wait_for_a_call(worker)

    threads = [t for t in threading.enumerate() if t.name == "sqs:WorkQueue"]
    assert threads and worker.runner.alive()
    worker.runner.stop()
    # stop() waits for the threads (a poll ends within wait_seconds); none is left behind.
    assert not any(t.is_alive() for t in threads)


def test_the_template_s_sqs_events_become_subscriptions(stack: Stack) -> None:
    runner = SqsRunner(stack)

    by_queue = {s.source.queue: s for s in runner.subscriptions}

    imports = by_queue["ContactImportQueue"]
    assert imports.function.logical_id == "ContactImportFunction"
    assert imports.source.batch_size == 1
    assert imports.source.report_batch_item_failures is True
    assert imports.function.timeout_seconds == 90
    assert imports.function.memory_mb == 1024
    assert imports.queue_url == stack.physical["ContactImportQueue"]


def test_the_template_s_maximum_concurrency_sets_how_many_threads_poll(stack: Stack) -> None:
    runner = SqsRunner(stack)

    pollers = {s.source.queue: s.pollers for s in runner.subscriptions}

    assert pollers["CampaignQueue"] == 5 and pollers["DialQueue"] == 5
    assert pollers["ContactImportQueue"] == 2  # chunks side by side
    assert pollers["ProvisioningQueue"] == 1  # no ScalingConfig: one batch at a time


GATED_HANDLER = """
import json
import os
import pathlib

import runner_test_gate

SEEN = pathlib.Path(__file__).with_name("seen.jsonl")


def handler(event, context):
    # Passes only once as many batches as the gate counts are inside at the same time.
    runner_test_gate.barrier.wait(timeout=10)
    with SEEN.open("a") as out:
        out.write(json.dumps({"module": __name__}) + "\\n")
"""


def test_a_queue_with_maximum_concurrency_works_that_many_batches_at_once(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    gate = types.ModuleType("runner_test_gate")
    gate.barrier = threading.Barrier(3)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runner_test_gate", gate)
    made = _worker(tmp_path)
    (made.code_dir / "app.py").write_text(GATED_HANDLER)
    function = made.runner._stack.functions["WorkerFunction"]
    function.sqs_events = [
        SqsEventSource(queue="WorkQueue", batch_size=1, max_concurrency=3),
    ]
    # Messages in flight stay hidden here (the shared queue's visibility is 0): otherwise, on a
    # slow machine, a poller takes a message again before its first batch has deleted it.
    made.sqs.set_queue_attributes(QueueUrl=made.queue_url, Attributes={"VisibilityTimeout": "60"})
    runner = SqsRunner(made.runner._stack, sqs_client=made.sqs)
    for n in range(3):
        made.send(n=n)

    runner.start()
    try:
        deadline = time.monotonic() + 20
        while len(made.calls()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()

    # Three batches got through a gate that opens only with three inside: side by side, each
    # in its own copy of the handler module (as each Lambda environment has its own).
    calls = made.calls()
    assert len(calls) == 3
    assert len({c["module"] for c in calls}) == 3


def test_a_runner_that_waits_long_ends_its_polls_when_it_stops(
    worker: Worker, emulator: Emulator
) -> None:
    ended: list[None] = []

    def end_polls() -> None:
        ended.append(None)
        emulator.end_long_polls()

    runner = SqsRunner(
        worker.runner._stack,
        sqs_client=worker.sqs,
        wait_seconds=LONG_WAIT_SECONDS,
        end_polls=end_polls,
    )
    runner.start()
    worker.send(n=1)
    _wait_for_a_call(worker)
    # This runner's own threads: one of the same name left behind by an earlier test may still
    # be finishing its poll.
    threads = list(runner._threads)
    assert threads and all(t.name == "sqs:WorkQueue" for t in threads)

    runner.stop()  # its thread is back in a 20 s poll by now

    assert ended
    assert not any(t.is_alive() for t in threads)
